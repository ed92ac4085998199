// Peer: a Socket.IO 4 server with connection-state recovery on (what a team relying on it
// for missed messages runs), websocket transport only (clients connect to
// ws://HOST:PORT/socket.io/?EIO=4&transport=websocket). A connection joins the room
// "bench", or with `&user=<id>` the room `notifications-<id>`, as the seeds' Socket.IO
// server does; POST /publish (or /publish?user=<id>) on the same HTTP server parses the
// JSON body and emits it as "notification" to that room, answering 202.
// Usage: node bench/peers/socketio-server.mjs --port PORT   (prints "ready" when listening)
import { createServer } from "node:http";
import { Server } from "socket.io";
import { exitOnSignal, portArg, readBody } from "./args.mjs";

const port = portArg();

// Socket.IO attaches its own "request" listener for /socket.io/ and hands every other
// request to this one.
const server = createServer(async (req, res) => {
  const url = new URL(req.url, "http://x");
  if (req.method === "POST" && url.pathname === "/publish") {
    let body;
    try {
      body = JSON.parse(await readBody(req));
    } catch (err) {
      res.writeHead(err.status ?? 400, { "Content-Type": "text/plain" }).end("bad body");
      return;
    }
    io.to(room(url.searchParams.get("user"))).emit("notification", body);
    res.writeHead(202, { "Content-Type": "text/plain" }).end("accepted");
    return;
  }
  res.writeHead(404, { "Content-Type": "text/plain" }).end("not found");
});

const io = new Server(server, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  cors: { origin: false },
  // Missed packets are buffered per session and replayed on a reconnect within 2 min.
  connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000 },
});

/** One room per user, or the one bench room. */
const room = (user) => (user ? `notifications-${user}` : "bench");

io.on("connection", (socket) => {
  socket.join(room(socket.handshake.query.user));
});

server.listen(port, "127.0.0.1", () => console.log("ready"));

exitOnSignal(
  () =>
    new Promise((resolve) => {
      io.disconnectSockets(true);
      io.close(() => resolve());
      server.closeAllConnections();
    }),
);
