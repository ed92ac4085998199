// The resume cursor: which seqs the app already has, what to send as `since`, and keeping
// it across page loads.

/**
 * Delivered seqs remembered one by one; older ones fold into the floor. A user's inbox keeps
 * 1,000 items (a room 500), so nothing older can come back anyway.
 */
const REMEMBERED = 1000;

/** Where a user's cursor is kept: one key per server and user, never shared between them. */
const storageKey = (base: string, user: string) => `herald:seq:${base}:${user}`;

/** Keeps one user's cursor across page loads. */
export interface CursorStore {
  load(user: string): number | undefined;
  save(user: string, seq: number): void;
}

/**
 * The user a token names: its `sub`, read without verifying (the server verifies; this only
 * picks whose stored cursor to use). Undefined when the token is not a readable JWT.
 */
export function tokenSubject(token: string): string | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(base64), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`).join(""),
    );
    const sub: unknown = JSON.parse(json).sub;
    return typeof sub === "string" && sub !== "" ? sub : undefined;
  } catch {
    return undefined;
  }
}

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

  /** Whose cursor this is (null: no token seen yet; undefined: a token naming nobody). */
  private user: string | undefined | null = null;

  /** `store`: a user's cursor, switched by token; none for a room's, which all readers share. */
  constructor(
    private readonly store?: CursorStore,
    start?: number,
  ) {
    this.last = start;
    this.floor = start ?? 0;
  }

  /**
   * Before each connect with `token`: the cursor of the user it names. When the user changes
   * (another sign-in in the same browser), this one's cursor is dropped for that user's own,
   * so a cursor of another user is never sent.
   */
  forToken(token: string): number | undefined {
    if (!this.store) return this.last;
    const user = tokenSubject(token);
    if (this.user !== null && user === this.user) return this.last;
    this.user = user;
    this.last = user === undefined ? undefined : this.store?.load(user);
    this.floor = this.last ?? 0;
    this.seen.clear();
    return this.last;
  }

  private save(seq: number): void {
    if (typeof this.user === "string") this.store?.save(this.user, seq);
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

/** The cursors of the server at `base` kept in `option` (default `localStorage`; null: kept nowhere). */
export function cursorStore(option: StorageLike | null | undefined, base: string): CursorStore {
  const storage = option === undefined ? defaultStorage() : option;
  if (!storage) return { load: () => undefined, save: () => {} };
  return {
    load: (user) => {
      try {
        const raw = storage.getItem(storageKey(base, user));
        const seq = raw === null ? NaN : Number(raw);
        return Number.isSafeInteger(seq) && seq >= 0 ? seq : undefined;
      } catch {
        return undefined;
      }
    },
    save: (user, seq) => {
      try {
        storage.setItem(storageKey(base, user), String(seq));
      } catch {
        // Full or forbidden storage (private mode) only costs a longer replay after a reload.
      }
    },
  };
}

function defaultStorage(): StorageLike | null {
  try {
    // Reading it can throw where the browser blocks site data.
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}
