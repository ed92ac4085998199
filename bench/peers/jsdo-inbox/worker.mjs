// Peer: what a team would write by hand on Cloudflare for Herald's job. One hibernating
// JavaScript Durable Object per user (`?user=`, else "bench"): a publish is inserted into
// the object's SQLite table with the next seq before the 202, then sent to the user's
// sockets as {"seq":…,"data":<the publish body>}. The text `ping` is answered with `pong`
// by the runtime (setWebSocketAutoResponse, no wake-up). No auth, no preferences, no
// retention: the floor under Herald's per-user path.
import { DurableObject } from "cloudflare:workers";

export class Inbox extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS notifications (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, created_at INTEGER NOT NULL)",
    );
  }

  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (pathname === "/ws") {
      const [client, server] = Object.values(new WebSocketPair());
      this.ctx.acceptWebSocket(server);
      return new Response(null, { status: 101, webSocket: client });
    }
    if (pathname === "/publish") {
      const body = await request.text();
      // Stored (the output gate holds the answer until the write is durable), then sent.
      const { seq } = this.ctx.storage.sql
        .exec("INSERT INTO notifications (body, created_at) VALUES (?, ?) RETURNING seq", body, Date.now())
        .one();
      const frame = `{"seq":${seq},"data":${body}}`;
      for (const ws of this.ctx.getWebSockets()) {
        try {
          ws.send(frame);
        } catch {
          // a socket closing right now; it leaves getWebSockets() on its own
        }
      }
      return Response.json({ seq }, { status: 202 });
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
    const url = new URL(request.url);
    const upgrade = request.headers.get("Upgrade")?.toLowerCase() === "websocket";
    if ((url.pathname === "/ws" && request.method === "GET" && upgrade) ||
        (url.pathname === "/publish" && request.method === "POST")) {
      const user = url.searchParams.get("user") ?? "bench";
      return env.INBOX.get(env.INBOX.idFromName(user)).fetch(request);
    }
    if (url.pathname === "/ws") return new Response("upgrade required", { status: 426 });
    return new Response("not found", { status: 404 });
  },
};
