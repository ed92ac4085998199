// Named one-shot timers on an injectable clock, so tests can drive time by hand.

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (id) => globalThis.clearTimeout(id as ReturnType<typeof setTimeout>),
};

/** At most one pending timer per name; setting a name again replaces its timer. */
export class Timers {
  private readonly ids = new Map<string, unknown>();

  constructor(private readonly clock: Clock) {}

  set(name: string, ms: number, fn: () => void): void {
    this.clear(name);
    const id = this.clock.setTimeout(() => {
      this.ids.delete(name);
      fn();
    }, ms);
    this.ids.set(name, id);
  }

  has(name: string): boolean {
    return this.ids.has(name);
  }

  clear(name: string): void {
    if (!this.ids.has(name)) return;
    this.clock.clearTimeout(this.ids.get(name));
    this.ids.delete(name);
  }

  clearAll(): void {
    for (const name of [...this.ids.keys()]) this.clear(name);
  }
}
