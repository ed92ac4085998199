// Peer: a Socket.IO 4 server, websocket transport only (clients connect to
// ws://HOST:PORT/socket.io/?EIO=4&transport=websocket). Every connection joins the room
// "bench"; POST /publish on the same HTTP server parses the JSON body and does
// io.to("bench").emit("notification", body), answering 202.
// Usage: node bench/peers/socketio-server.mjs --port PORT   (prints "ready" when listening)
import { createServer } from "node:http";
import { Server } from "socket.io";
import { exitOnSignal, portArg, readBody } from "./args.mjs";

const port = portArg();

// Socket.IO attaches its own "request" listener for /socket.io/ and hands every other
// request to this one.
const server = createServer(async (req, res) => {
  if (req.method === "POST" && req.url === "/publish") {
    let body;
    try {
      body = JSON.parse(await readBody(req));
    } catch (err) {
      res.writeHead(err.status ?? 400, { "Content-Type": "text/plain" }).end("bad body");
      return;
    }
    io.to("bench").emit("notification", body);
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
});

io.on("connection", (socket) => {
  socket.join("bench");
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
