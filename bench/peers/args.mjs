// Shared by the peer servers.

/** The value of `--name V` (or `--name=V`), the last one given; undefined when absent. */
function flag(argv, name) {
  let value;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === name) value = argv[i + 1];
    else if (argv[i].startsWith(`${name}=`)) value = argv[i].slice(name.length + 1);
  }
  return value;
}

/** A port flag's value, a number in 1..65535; exits with `usage` otherwise. */
function portFlag(argv, name, usage) {
  const port = Number(flag(argv, name));
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error(usage);
    process.exit(2);
  }
  return port;
}

/** `--port N` (or `--port=N`). */
export function portArg(argv = process.argv.slice(2)) {
  return portFlag(argv, "--port", "usage: node <server>.mjs --port PORT");
}

/**
 * `--inspector-port N`: where workerd's DevTools inspector should listen (bench/profile.mjs
 * samples the isolate's CPU there); undefined when not given.
 */
export function inspectorPortArg(argv = process.argv.slice(2)) {
  if (flag(argv, "--inspector-port") === undefined) return undefined;
  return portFlag(argv, "--inspector-port", "--inspector-port takes a port number, 1..65535");
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
