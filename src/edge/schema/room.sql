CREATE TABLE IF NOT EXISTS room_members (user TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS room_leaving (user TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS room_remote (
    session TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    shard INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS room_remote_user ON room_remote (user);
CREATE INDEX IF NOT EXISTS room_remote_shard ON room_remote (shard);
CREATE TABLE IF NOT EXISTS room_shards (shard INTEGER PRIMARY KEY, confirmed_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS room_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
