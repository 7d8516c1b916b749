-- Step output, kept apart from the event log (issue #11): what each step attempt wrote to
-- stdout and stderr, in chunks of whole lines, at most the controller's per-attempt cap
-- (`--max-step-output`): the head (the first half of the cap) and the tail (the last half),
-- with what was dropped between them counted. Keep in step with ../postgres/0004_step_output.sql.

-- One row per step attempt that wrote anything: its counters.
CREATE TABLE step_output_attempts (
    rollout_id     INTEGER NOT NULL REFERENCES rollouts (id),
    server         TEXT    NOT NULL,
    assignment_id  TEXT    NOT NULL,
    step_index     INTEGER NOT NULL,
    attempt        INTEGER NOT NULL,
    step_id        TEXT    NOT NULL,
    -- 1, 2, 3 … per (rollout, server): the order in which its attempts began to write
    ord            INTEGER NOT NULL,
    -- when its first output was stored (Unix ms)
    started_at_ms  INTEGER NOT NULL,
    -- chunk_seq of its newest chunk
    last_chunk_seq INTEGER NOT NULL,
    -- everything received, kept or not (bytes: each line with its newline)
    lines          INTEGER NOT NULL,
    bytes          INTEGER NOT NULL,
    -- chunk_seq of the head's last chunk once the head is full (NULL: every chunk is head)
    head_end_seq   INTEGER,
    head_bytes     INTEGER NOT NULL,
    -- what the chunks after the head hold now
    tail_lines     INTEGER NOT NULL,
    tail_bytes     INTEGER NOT NULL,
    -- dropped from between the head and the tail
    dropped_lines  INTEGER NOT NULL,
    dropped_bytes  INTEGER NOT NULL,
    PRIMARY KEY (rollout_id, server, assignment_id, step_index, attempt)
) WITHOUT ROWID;

CREATE INDEX step_output_attempts_by_server ON step_output_attempts (lower(server), rollout_id);

-- The chunks: whole lines of one stream joined with '\n' (no trailing newline).
CREATE TABLE step_output (
    rollout_id    INTEGER NOT NULL,
    server        TEXT    NOT NULL,
    assignment_id TEXT    NOT NULL,
    step_index    INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    -- 1, 2, 3 … within the attempt; a gap where tail chunks were dropped
    chunk_seq     INTEGER NOT NULL CHECK (chunk_seq >= 1),
    at_ms         INTEGER NOT NULL,
    stderr        BOOLEAN NOT NULL,
    lines         INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    text          TEXT    NOT NULL,
    PRIMARY KEY (rollout_id, server, assignment_id, step_index, attempt, chunk_seq),
    FOREIGN KEY (rollout_id, server, assignment_id, step_index, attempt)
        REFERENCES step_output_attempts (rollout_id, server, assignment_id, step_index, attempt)
);
