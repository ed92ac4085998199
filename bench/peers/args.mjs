// Shared by the peer servers: `--port N` (or `--port=N`), a number in 1..65535.
export function portArg(argv = process.argv.slice(2)) {
  let value;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--port") value = argv[i + 1];
    else if (argv[i].startsWith("--port=")) value = argv[i].slice("--port=".length);
  }
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error("usage: node <server>.mjs --port PORT");
    process.exit(2);
  }
  return port;
}

/** Every `--binding KEY=VALUE` (or `--binding=KEY=VALUE`), as an object of strings. */
export function bindingArgs(argv = process.argv.slice(2)) {
  const bindings = {};
  for (let i = 0; i < argv.length; i++) {
    let pair;
    if (argv[i] === "--binding") pair = argv[++i];
    else if (argv[i].startsWith("--binding=")) pair = argv[i].slice("--binding=".length);
    else continue;
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(pair ?? "");
    if (!match) {
      console.error(`--binding takes KEY=VALUE, got ${pair}`);
      process.exit(2);
    }
    bindings[match[1]] = match[2];
  }
  return bindings;
}

/** Reads a request body as text, refusing anything over `limit` bytes. */
export function readBody(req, limit = 1 << 20) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > limit) {
        reject(Object.assign(new Error("body too large"), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/** Closes `server` on SIGTERM / SIGINT (then exits), so the runner can stop a peer cleanly. */
export function exitOnSignal(close) {
  let closing = false;
  const stop = async () => {
    if (closing) return;
    closing = true;
    const force = setTimeout(() => process.exit(0), 5_000);
    force.unref();
    try {
      await close();
    } finally {
      process.exit(0);
    }
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
