// Peer: a plain Node WebSocket server (package `ws`, one WebSocketServer). WebSocket
// upgrades on /ws; POST /publish sends the body text verbatim to every open socket and
// answers 202. A text `ping` is answered with `pong`, like Herald's heartbeat.
// Usage: node bench/peers/ws-server.mjs --port PORT   (prints "ready" when listening)
import { createServer } from "node:http";
import { WebSocket, WebSocketServer } from "ws";
import { exitOnSignal, portArg, readBody } from "./args.mjs";

const port = portArg();
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: true });

wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    if (!isBinary && data.length === 4 && data.toString() === "ping") ws.send("pong");
  });
  ws.on("error", () => {});
});

const server = createServer(async (req, res) => {
  if (req.method === "POST" && req.url === "/publish") {
    let body;
    try {
      body = await readBody(req);
    } catch (err) {
      res.writeHead(err.status ?? 400).end();
      return;
    }
    for (const ws of wss.clients) {
      if (ws.readyState === WebSocket.OPEN) ws.send(body);
    }
    res.writeHead(202, { "Content-Type": "text/plain" }).end("accepted");
    return;
  }
  res.writeHead(404, { "Content-Type": "text/plain" }).end("not found");
});

server.on("upgrade", (req, socket, head) => {
  if (new URL(req.url, "http://x").pathname !== "/ws") {
    socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
});

server.listen(port, "127.0.0.1", () => console.log("ready"));

exitOnSignal(
  () =>
    new Promise((resolve) => {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.close(() => resolve());
      server.closeAllConnections();
    }),
);
