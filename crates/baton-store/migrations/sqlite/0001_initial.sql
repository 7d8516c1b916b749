-- Baton store, SQLite schema. Keep in step with ../postgres/0001_initial.sql.

CREATE TABLE rollouts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    fleet_name          TEXT    NOT NULL,
    fleet_toml          TEXT    NOT NULL,
    runbook_name        TEXT    NOT NULL,
    runbook_toml        TEXT    NOT NULL,
    params_json         TEXT    NOT NULL,
    state               TEXT    NOT NULL DEFAULT 'running',
    created_at_ms       INTEGER NOT NULL,
    planned_makespan_ms INTEGER NOT NULL,
    lower_bound_ms      INTEGER NOT NULL,
    -- seq of the rollout's last event (0: none yet); bumped in the transaction that appends one
    last_seq            INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE events (
    rollout_id INTEGER NOT NULL REFERENCES rollouts (id),
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    at_ms      INTEGER NOT NULL,
    server     TEXT,
    pool       TEXT,
    kind       TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    PRIMARY KEY (rollout_id, seq)
) WITHOUT ROWID;

CREATE TABLE workers (
    fqdn              TEXT    PRIMARY KEY,
    version           TEXT    NOT NULL,
    platform          TEXT    NOT NULL,
    known             BOOLEAN NOT NULL,
    connected         BOOLEAN NOT NULL,
    last_heartbeat_ms INTEGER
);
