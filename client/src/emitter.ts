// A typed event emitter: `on` returns the unsubscribe function.

type AnyHandler = (value: unknown) => void;

export class Emitter<E> {
  private readonly handlers = new Map<keyof E, Set<AnyHandler>>();

  on<K extends keyof E>(event: K, handler: (value: E[K]) => void): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    const entry = handler as AnyHandler;
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }

  emit<K extends keyof E>(event: K, value: E[K]): void {
    // A copy, so that a handler may unsubscribe (or subscribe) while we iterate.
    for (const handler of [...(this.handlers.get(event) ?? [])]) {
      try {
        handler(value);
      } catch (error) {
        // An app bug must not stop the other handlers or leave the SDK half way through a
        // frame; rethrowing later still surfaces it (console, uncaughtException).
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
