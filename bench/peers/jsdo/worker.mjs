// Peer: a minimal hibernating JavaScript Durable Object that broadcasts to its sockets.
// The Worker sends GET /ws (WebSocket upgrade) and POST /publish to the one instance
// named "bench"; the object accepts sockets with the Hibernation API, answers the text
// `ping` with `pong` in the runtime (setWebSocketAutoResponse, no wake-up), and sends the
// request body text of a publish to every socket from ctx.getWebSockets().
import { DurableObject } from "cloudflare:workers";

export class Broadcaster extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
  }

  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (pathname === "/ws") {
      const [client, server] = Object.values(new WebSocketPair());
      this.ctx.acceptWebSocket(server);
      return new Response(null, { status: 101, webSocket: client });
    }
    if (pathname === "/publish") {
      const text = await request.text();
      for (const ws of this.ctx.getWebSockets()) {
        try {
          ws.send(text);
        } catch {
          // a socket closing right now; it leaves getWebSockets() on its own
        }
      }
      return new Response("accepted", { status: 202 });
    }
    return new Response("not found", { status: 404 });
  }

  webSocketMessage() {}

  webSocketClose(ws, code) {
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, "bye");
    } catch {
      // already closed (auto-reply to close)
    }
  }

  webSocketError() {}
}

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    const upgrade = request.headers.get("Upgrade")?.toLowerCase() === "websocket";
    if ((pathname === "/ws" && request.method === "GET" && upgrade) ||
        (pathname === "/publish" && request.method === "POST")) {
      return env.BENCH.get(env.BENCH.idFromName("bench")).fetch(request);
    }
    if (pathname === "/ws") return new Response("upgrade required", { status: 426 });
    return new Response("not found", { status: 404 });
  },
};
