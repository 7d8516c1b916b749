-- Step output, kept apart from the event log (issue #11): what each step attempt wrote to
-- stdout and stderr, in chunks of whole lines, at most the controller's per-attempt cap
-- (`--max-step-output`): the head (the first half of the cap) and the tail (the last half),
-- with what was dropped between them counted. Keep in step with ../sqlite/0004_step_output.sql.
-- Every integer is BIGINT (Rust i64).

-- One row per step attempt that wrote anything: its counters.
CREATE TABLE step_output_attempts (
    rollout_id     BIGINT  NOT NULL REFERENCES rollouts (id),
    server         TEXT    NOT NULL,
    assignment_id  TEXT    NOT NULL,
    step_index     BIGINT  NOT NULL,
    attempt        BIGINT  NOT NULL,
    step_id        TEXT    NOT NULL,
    -- 1, 2, 3 … per (rollout, server): the order in which its attempts began to write
    ord            BIGINT  NOT NULL,
    -- when its first output was stored (Unix ms)
    started_at_ms  BIGINT  NOT NULL,
    -- chunk_seq of its newest chunk
    last_chunk_seq BIGINT  NOT NULL,
    -- everything received, kept or not (bytes: each line with its newline)
    lines          BIGINT  NOT NULL,
    bytes          BIGINT  NOT NULL,
    -- chunk_seq of the head's last chunk once the head is full (NULL: every chunk is head)
    head_end_seq   BIGINT,
    head_bytes     BIGINT  NOT NULL,
    -- what the chunks after the head hold now
    tail_lines     BIGINT  NOT NULL,
    tail_bytes     BIGINT  NOT NULL,
    -- dropped from between the head and the tail
    dropped_lines  BIGINT  NOT NULL,
    dropped_bytes  BIGINT  NOT NULL,
    PRIMARY KEY (rollout_id, server, assignment_id, step_index, attempt)
);

CREATE INDEX step_output_attempts_by_server ON step_output_attempts (lower(server), rollout_id);

-- The chunks: whole lines of one stream joined with '\n' (no trailing newline).
CREATE TABLE step_output (
    rollout_id    BIGINT  NOT NULL,
    server        TEXT    NOT NULL,
    assignment_id TEXT    NOT NULL,
    step_index    BIGINT  NOT NULL,
    attempt       BIGINT  NOT NULL,
    -- 1, 2, 3 … within the attempt; a gap where tail chunks were dropped
    chunk_seq     BIGINT  NOT NULL CHECK (chunk_seq >= 1),
    at_ms         BIGINT  NOT NULL,
    stderr        BOOLEAN NOT NULL,
    lines         BIGINT  NOT NULL,
    bytes         BIGINT  NOT NULL,
    text          TEXT    NOT NULL,
    PRIMARY KEY (rollout_id, server, assignment_id, step_index, attempt, chunk_seq),
    FOREIGN KEY (rollout_id, server, assignment_id, step_index, attempt)
        REFERENCES step_output_attempts (rollout_id, server, assignment_id, step_index, attempt)
);
