-- The store's identity: made at random once, when the store is created, and never changed.
-- Assignment ids carry it, so an id from another database (an earlier install, a move from
-- SQLite to PostgreSQL, a second controller) can never be mistaken for one of this store's.
CREATE TABLE store_identity (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    store_id TEXT NOT NULL
);
INSERT INTO store_identity (id, store_id)
    VALUES (1, substr(replace(gen_random_uuid()::text, '-', ''), 1, 16));
