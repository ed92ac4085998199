CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    read_at INTEGER,
    -- NULL: pushed (or never to be); 1: held for the batch window; 2: for focus/quiet hours.
    held INTEGER,
    item TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_held ON notifications (held) WHERE held IS NOT NULL;
CREATE INDEX IF NOT EXISTS notifications_by_id ON notifications (id);
CREATE INDEX IF NOT EXISTS notifications_expiry ON notifications (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS hub_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (at);
CREATE TABLE IF NOT EXISTS hub_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS device_acks (
    device TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS device_acks_by_age ON device_acks (at);
