// The resume cursor: which seqs the app already has, what to send as `since`, and keeping
// it across page loads.

/**
 * Delivered seqs remembered one by one; older ones fold into the floor. A user's inbox keeps
 * 1,000 items (a room 500), so nothing older can come back anyway.
 */
const REMEMBERED = 1000;

const STORAGE_KEY = "herald:seq";

export class SeqCursor {
  /** The highest seq known here: sent as `since` on the next connect. */
  last: number | undefined;
  /** Everything at or below it was delivered before (or stands in a page the app refetched). */
  private floor: number;
  /**
   * Seqs above the floor delivered so far. "Above the highest" alone is not enough: an urgent
   * item skips a batch window, so held items with lower seqs arrive after it and are new.
   */
  private readonly seen = new Set<number>();

  constructor(
    start: number | undefined,
    private readonly save: (seq: number) => void = () => {},
  ) {
    this.last = start;
    this.floor = start ?? 0;
  }

  /** The items never delivered before, in seq order; the cursor moves past them. */
  take<T extends { seq: number }>(items: readonly T[]): T[] {
    const fresh = [...items].sort((a, b) => a.seq - b.seq).filter((item) => this.accept(item.seq));
    if (this.last !== undefined && fresh.length > 0) this.save(this.last);
    return fresh;
  }

  /** A first connect without `since`: resume from the server's latest seq from now on. */
  adopt(latest: number): void {
    if (this.last !== undefined) return;
    this.last = latest;
    this.save(latest);
  }

  /** The server could not replay: the app refetches, and everything up to `latest` counts as had. */
  reset(latest: number): void {
    this.last = this.floor = latest;
    this.seen.clear();
    this.save(latest);
  }

  private accept(seq: number): boolean {
    if (seq <= this.floor || this.seen.has(seq)) return false;
    this.seen.add(seq);
    this.last = Math.max(this.last ?? 0, seq);
    if (this.seen.size > REMEMBERED) this.forgetOldest();
    return true;
  }

  private forgetOldest(): void {
    const oldest = Math.min(...this.seen);
    this.seen.delete(oldest);
    this.floor = Math.max(this.floor, oldest);
  }
}

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** The stored cursor and a way to update it, or nothing when there is no storage. */
export function seqStore(option: StorageLike | null | undefined): { start?: number; save?: (seq: number) => void } {
  const storage = option === undefined ? defaultStorage() : option;
  if (!storage) return {};
  return {
    start: load(storage),
    save: (seq) => {
      try {
        storage.setItem(STORAGE_KEY, String(seq));
      } catch {
        // Full or forbidden storage (private mode) only costs a longer replay after a reload.
      }
    },
  };
}

function load(storage: StorageLike): number | undefined {
  try {
    const raw = storage.getItem(STORAGE_KEY);
    const seq = raw === null ? NaN : Number(raw);
    return Number.isSafeInteger(seq) && seq >= 0 ? seq : undefined;
  } catch {
    return undefined;
  }
}

function defaultStorage(): StorageLike | null {
  try {
    // Reading it can throw where the browser blocks site data.
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}
