// Runs the built Worker (build/index.js) in workerd through Miniflare, on 127.0.0.1 and a
// free port, with the Durable Object classes and vars from wrangler.toml, and gives tests
// real WebSocket clients (`ws`) and HTTP helpers.
import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Miniflare } from "miniflare";
import { chromium } from "playwright-core";
import WebSocket from "ws";
import { claimsFor, signJwt } from "./jwt.mjs";

const root = new URL("..", import.meta.url).pathname;

export const JWT_SECRET = "test-jwt-secret-that-is-long-enough-0123456789";
export const PUBLISH_KEY = "test-publish-key-0123456789";
export const ADMIN_KEY = "test-admin-key-0123456789";
export const ISSUER = "https://auth.example.test";
export const AUDIENCE = "herald-test";
export const ALLOWED_ORIGIN = "https://app.example.test";

/** Key pairs for the asymmetric algorithms, published to the Worker as JWT_JWKS. */
export const keys = {
  RS256: { kid: "rsa-1", ...generateKeyPairSync("rsa", { modulusLength: 2048 }) },
  ES256: { kid: "ec-1", ...generateKeyPairSync("ec", { namedCurve: "P-256" }) },
  EdDSA: { kid: "ed-1", ...generateKeyPairSync("ed25519") },
};
const jwks = {
  keys: Object.entries(keys).map(([alg, k]) => ({
    ...k.publicKey.export({ format: "jwk" }),
    kid: k.kid,
    alg,
    use: "sig",
  })),
};

/** A token for `sub` that the test deployment accepts; `alg` picks the key. */
export function tokenFor(sub, { alg = "HS256", ttlS = 3600, claims = {} } = {}) {
  const body = claimsFor(sub, ttlS, { iss: ISSUER, aud: AUDIENCE, ...claims });
  if (alg === "HS256") return signJwt(body, { key: JWT_SECRET });
  return signJwt(body, { alg, key: keys[alg].privateKey, kid: keys[alg].kid });
}

/** compatibility_date and [vars] from wrangler.toml, so tests run what deploys. */
function wranglerConfig() {
  const text = readFileSync(join(root, "wrangler.toml"), "utf8");
  const vars = {};
  let section = "";
  for (const line of text.split("\n")) {
    const header = line.match(/^\s*\[+([^\]]+)\]+/);
    if (header) section = header[1].trim();
    const pair = line.match(/^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"(.*)"\s*$/);
    if (pair && section === "vars") vars[pair[1]] = pair[2];
  }
  const compatibilityDate = text.match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];
  return { compatibilityDate, vars };
}

/**
 * Starts Herald in workerd. With `persistDir`, Durable Object storage lives there and
 * survives `stop()`; without one, a fresh temporary directory is used and removed. With
 * `inspectorPort`, the runtime's DevTools inspector listens there (the soak reads memory).
 */
export async function startHerald({ persistDir, bindings = {}, port = 0, inspectorPort } = {}) {
  const ownDir = !persistDir;
  const dir = persistDir ?? mkdtempSync(join(tmpdir(), "herald-test-"));
  const { compatibilityDate, vars } = wranglerConfig();
  const logs = [];
  // Every line the runtime printed, JSON or not: uncaught exceptions, panics and stack
  // traces arrive as plain text, which `logs` leaves out.
  const output = [];
  const listeners = new Set();
  const mf = new Miniflare({
    modules: true,
    scriptPath: join(root, "build/index.js"),
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate,
    durableObjects: {
      USER_HUB: { className: "UserHub", useSQLite: true },
      ROOM_HUB: { className: "RoomHub", useSQLite: true },
      STATS: { className: "StatsHub", useSQLite: true },
    },
    bindings: {
      ...vars,
      JWT_SECRET,
      JWT_JWKS: JSON.stringify(jwks),
      JWT_ISSUER: ISSUER,
      JWT_AUDIENCE: AUDIENCE,
      PUBLISH_KEY,
      ADMIN_KEY,
      ALLOWED_ORIGINS: ALLOWED_ORIGIN,
      ...bindings,
    },
    durableObjectsPersist: dir,
    host: "127.0.0.1",
    port,
    inspectorPort,
    handleStructuredLogs: ({ message }) => {
      output.push(message);
      let line;
      try {
        line = JSON.parse(message);
      } catch {
        return;
      }
      logs.push(line);
      for (const listener of listeners) listener(line);
    },
  });
  // `let`: after a crash Miniflare starts workerd again, on a new port unless one was given.
  let url = await mf.ready;
  return {
    get url() {
      return url;
    },
    logs,
    output,
    dir,
    /** Resolves with the first log line (past or future) matching `predicate`. */
    waitForLog(predicate, { timeoutMs = 30_000, after = 0 } = {}) {
      const seen = logs.slice(after).find(predicate);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(listener);
          reject(new Error("timed out waiting for a log line"));
        }, timeoutMs);
        const listener = (line) => {
          if (!predicate(line)) return;
          clearTimeout(timer);
          listeners.delete(listener);
          resolve(line);
        };
        listeners.add(listener);
      });
    },
    /** Opens a WebSocket to `path`; see {@link connect}. */
    connect(path, options) {
      return connect(new URL(path, url.href.replace(/^http/, "ws")), options);
    },
    /** Sends an HTTP request and returns { status, headers, body (parsed JSON or text) }. */
    async request(path, { method = "GET", headers = {}, body } = {}) {
      const res = await fetch(new URL(path, url), {
        method,
        headers,
        body: typeof body === "string" || body === undefined ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed = text;
      try {
        parsed = JSON.parse(text);
      } catch {}
      return { status: res.status, headers: res.headers, body: parsed };
    },
    /** POST /v1/publish with the producer key. */
    publish(body, { key = PUBLISH_KEY, headers = {} } = {}) {
      return this.request("/v1/publish", {
        method: "POST",
        headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json", ...headers },
        body,
      });
    },
    /** The workerd process serving this instance (for RSS samples and crashes). */
    pid() {
      return workerdPid(Number(url.port));
    },
    /**
     * SIGKILLs this instance's workerd process — a crash, not a graceful stop — and resolves
     * once Miniflare has started it again with the same options: the same state directory,
     * and the same port if one was given (else `url` moves to the new one). Only this
     * instance's process is killed, so tests beside it keep running. Pass `pid` (from
     * `pid()`) to kill without first looking the process up.
     */
    async crash({ pid = this.pid(), timeoutMs = 30_000 } = {}) {
      if (pid === undefined) throw new Error(`no workerd child of this process listens on ${url.port}`);
      process.kill(pid, "SIGKILL");
      // Miniflare restarts workerd when it sees the exit, which is when Node reaps the process.
      const deadline = Date.now() + timeoutMs;
      while (existsSync(`/proc/${pid}`)) {
        if (Date.now() > deadline) throw new Error(`workerd ${pid} did not exit after SIGKILL`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      url = await mf.ready;
      return pid;
    },
    async stop() {
      await mf.dispose();
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A free TCP port on 127.0.0.1, for tests that must restart the runtime on the same one. */
export function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * The pid of the workerd process that Miniflare spawned for this process and that listens
 * on `port`, found through /proc (Linux): the listening socket's inode among the process's
 * file descriptors. Undefined when there is none.
 */
export function workerdPid(port) {
  const listening = new Set();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const cols = line.trim().split(/\s+/);
      const localPort = parseInt(cols[1]?.split(":").at(-1) ?? "", 16);
      if (cols[3] === "0A" && localPort === port) listening.add(cols[9]);
    }
  }
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // "pid (comm) state ppid …"; comm may hold spaces, so read after the last ")".
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (comm !== "workerd" || ppid !== process.pid) continue;
      for (const fd of readdirSync(`/proc/${entry}/fd`)) {
        let link = "";
        try {
          link = readlinkSync(`/proc/${entry}/fd/${fd}`);
        } catch {
          continue; // closed while we looked
        }
        const inode = link.match(/^socket:\[(\d+)\]$/)?.[1];
        if (inode && listening.has(inode)) return Number(entry);
      }
    } catch {
      // The process went away while we looked.
    }
  }
  return undefined;
}

/**
 * A real WebSocket client that records every frame. Resolves once open; rejects with
 * { status, body } when the server refuses the upgrade.
 */
export function connect(url, { protocols, headers = {}, timeoutMs = 15_000 } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { headers, handshakeTimeout: timeoutMs });
    const client = new Client(ws);
    ws.once("open", () => resolve(client));
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => {
        let parsed = body;
        try {
          parsed = JSON.parse(body);
        } catch {}
        reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), {
          status: res.statusCode,
          body: parsed,
        }));
      });
    });
    ws.once("error", (err) => reject(err));
  });
}

class Client {
  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.waiters = new Set();
    this.closed = new Promise((resolve) =>
      ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    ws.on("message", (data, isBinary) => {
      const text = data.toString();
      const frame = isBinary || text === "pong" ? text : JSON.parse(text);
      this.frames.push(frame);
      for (const waiter of this.waiters) waiter();
    });
  }

  get protocol() {
    return this.ws.protocol;
  }

  send(data) {
    this.ws.send(typeof data === "string" ? data : JSON.stringify(data));
  }

  /** The first recorded frame (past or future) matching `predicate`. */
  next(predicate, { timeoutMs = 15_000 } = {}) {
    return this.nth(predicate, 1, { timeoutMs }).then((frames) => frames[0]);
  }

  /** Resolves with the frames matching `predicate` once there are `count` of them. */
  nth(predicate, count, { timeoutMs = 15_000 } = {}) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const matching = this.frames.filter(predicate);
        if (matching.length < count) return false;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(matching.slice(0, count));
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out waiting for ${count} frame(s); have ${JSON.stringify(this.frames)}`));
      }, timeoutMs);
      if (!check()) this.waiters.add(check);
    });
  }

  close(code = 1000) {
    this.ws.close(code);
    return this.closed;
  }
}

export const ofType = (type) => (frame) => frame?.type === type;

/**
 * What the Durable Objects under `dir` (a `startHerald` storage directory) have stored:
 * one entry per database file, `{ file, tables: { name: rows } }`, read with SQLite itself
 * (read-only, beside the running runtime).
 */
export async function storedDatabases(dir) {
  // Imported here: Node 22 warns on loading it, and only these tests need it.
  const { DatabaseSync } = await import("node:sqlite");
  const files = readdirSync(dir, { recursive: true }).filter((f) => f.endsWith(".sqlite"));
  return files.map((file) => {
    const db = new DatabaseSync(join(dir, file), { readOnly: true });
    try {
      const names = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%'").all();
      const tables = Object.fromEntries(
        names.map(({ name }) => [name, db.prepare(`SELECT COUNT(*) AS n FROM "${name}"`).get().n]),
      );
      const indexes = db.prepare("SELECT name FROM sqlite_master WHERE type = 'index'").all().map((r) => r.name);
      return { file, tables, indexes };
    } finally {
      db.close();
    }
  });
}

/** Debian's headless Chromium, driven by playwright-core, with nothing that reaches out. */
export function launchChromium() {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
