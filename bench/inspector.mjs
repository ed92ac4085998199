// One Chrome DevTools Protocol session with one isolate of workerd's inspector (on
// 127.0.0.1), shared by the bench scripts: bench/profile.mjs samples an isolate's CPU with
// it, bench/soak.mjs reads Herald's memory.
import WebSocket from "ws";

export class Inspector {
  /**
   * A session on the inspector WebSocket at `url` (from its /json list), whose calls wait
   * `timeoutMs` for an answer (a large profile takes a while to arrive).
   */
  static async open(url, { timeoutMs = 10_000 } = {}) {
    const ws = new WebSocket(url, { maxPayload: 1 << 30 });
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    return new this(ws, timeoutMs);
  }

  constructor(ws, timeoutMs) {
    this.ws = ws;
    this.timeoutMs = timeoutMs;
    this.nextId = 0;
    this.pending = new Map();
    ws.on("message", (data) => {
      const message = JSON.parse(data);
      if (message.method) this.onEvent?.(message);
      const answer = this.pending.get(message.id);
      this.pending.delete(message.id);
      answer?.(message);
    });
    ws.on("close", () => {
      for (const answer of this.pending.values()) answer({ error: { message: "inspector closed" } });
      this.pending.clear();
    });
  }

  /** The result of `method`; throws on an error answer, or on none within the timeout. */
  async call(method, params = {}) {
    if (this.ws.readyState !== WebSocket.OPEN) throw new Error(`${method}: inspector closed`);
    const id = ++this.nextId;
    const answer = await new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ error: { message: "no answer" } });
      }, this.timeoutMs);
      this.pending.set(id, (message) => {
        clearTimeout(timer);
        resolve(message);
      });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
    if (answer.error) throw new Error(`${method}: ${answer.error.message}`);
    return answer.result;
  }

  close() {
    this.ws.close();
  }
}
