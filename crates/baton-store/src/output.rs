//! Step output: what each step attempt wrote to stdout and stderr, kept apart from the event
//! log (issue #11), in chunks of whole lines, at most a cap per attempt.
//!
//! An attempt's output is a *head* (its first lines, up to half the cap) and a *tail* (its last
//! lines, up to the other half). Once the head is full, new chunks still go to the tail, and its
//! oldest chunks are deleted (the oldest one left is cut at a line) so that the tail stays
//! within its half; what went is counted on the attempt (`dropped_lines`, `dropped_bytes`), and
//! readers are told, at the place it went from, how much. Nothing is dropped silently.
//!
//! Sizes are in bytes of lines *with* their newline, so a chunk of `n` bytes holds `text` of
//! `n - 1` bytes and they add up across chunks.
//!
//! Each append is one transaction: the attempt's row is bumped first (its row lock on
//! PostgreSQL, the write lock on SQLite), so appends to one attempt queue up.

use std::collections::HashMap;

use crate::{Store, StoreError, now_ms, with_pool};

/// The default cap on one step attempt's stored output: 10 MiB.
pub const DEFAULT_MAX_STEP_OUTPUT: u64 = 10 * 1024 * 1024;

/// The step attempt some output belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepOutputKey {
    pub rollout_id: i64,
    /// The server's FQDN as its fleet writes it.
    pub server: String,
    pub assignment_id: String,
    /// Index into the server's steps.
    pub step_index: i64,
    /// 1 for the first attempt.
    pub attempt: i64,
}

/// Output to store: whole lines of one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStepOutput {
    pub key: StepOutputKey,
    /// The step's id (for readers asking by step).
    pub step_id: String,
    pub stderr: bool,
    /// One or more lines joined with '\n', without a trailing newline: `""` is one empty line.
    pub text: String,
}

/// One step attempt that wrote output: what it wrote and what is kept of it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StepOutputAttempt {
    pub rollout_id: i64,
    pub server: String,
    pub assignment_id: String,
    pub step_index: i64,
    pub attempt: i64,
    pub step_id: String,
    /// 1, 2, 3 … per rollout and server, in the order its attempts began to write.
    pub ord: i64,
    /// When its first output was stored (Unix ms).
    pub started_at_ms: i64,
    /// The newest chunk's `chunk_seq`.
    pub last_chunk_seq: i64,
    /// Everything it wrote, kept or not (bytes count each line's newline).
    pub lines: i64,
    pub bytes: i64,
    /// The head's last chunk once the head is full; `None`: every chunk is head.
    pub head_end_seq: Option<i64>,
    pub head_bytes: i64,
    /// What the chunks after the head hold now.
    pub tail_lines: i64,
    pub tail_bytes: i64,
    /// Dropped between the head and the tail.
    pub dropped_lines: i64,
    pub dropped_bytes: i64,
}

impl StepOutputAttempt {
    pub fn key(&self) -> StepOutputKey {
        StepOutputKey {
            rollout_id: self.rollout_id,
            server: self.server.clone(),
            assignment_id: self.assignment_id.clone(),
            step_index: self.step_index,
            attempt: self.attempt,
        }
    }
}

/// One stored chunk of output.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StepOutputChunk {
    pub rollout_id: i64,
    pub server: String,
    pub assignment_id: String,
    pub step_index: i64,
    pub attempt: i64,
    /// 1, 2, 3 … within the attempt (with a gap where tail chunks were dropped).
    pub chunk_seq: i64,
    /// When it was stored (Unix ms).
    pub at_ms: i64,
    pub stderr: bool,
    pub lines: i64,
    pub bytes: i64,
    /// Whole lines joined with '\n', without a trailing newline.
    pub text: String,
}

/// Which of a server's step attempts to read (`None`: all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOutputFilter {
    pub assignment_id: Option<String>,
    pub step_id: Option<String>,
}

/// What a reader gets, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputItem {
    /// Stored output.
    Chunk {
        step_id: String,
        chunk: StepOutputChunk,
    },
    /// At this point of the attempt's output, this many lines (and bytes, newlines included)
    /// were dropped to keep it within the cap.
    Dropped {
        key: StepOutputKey,
        step_id: String,
        lines: i64,
        bytes: i64,
    },
}

/// How far a reader has read each attempt: pass the same cursor again to get only what is new
/// (and a note for what was dropped before it could be read).
#[derive(Debug, Clone, Default)]
pub struct OutputCursor {
    seen: HashMap<StepOutputKey, Seen>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// The last chunk read.
    last_seq: i64,
    /// Of the output after the head: lines and bytes read or announced as dropped.
    tail_lines: i64,
    tail_bytes: i64,
}

/// One consistent look at an attempt: its row, what lies after `after` in its tail, and its
/// first chunks after `after`.
struct Page {
    attempt: StepOutputAttempt,
    /// Lines and bytes of the chunks after the head and after `after`.
    unread_tail: (i64, i64),
    chunks: Vec<StepOutputChunk>,
}

macro_rules! attempt_columns {
    () => {
        "rollout_id, server, assignment_id, step_index, attempt, step_id, ord, started_at_ms, \
         last_chunk_seq, lines, bytes, head_end_seq, head_bytes, tail_lines, tail_bytes, \
         dropped_lines, dropped_bytes"
    };
}

macro_rules! chunk_columns {
    () => {
        "rollout_id, server, assignment_id, step_index, attempt, chunk_seq, at_ms, stderr, lines, \
         bytes, text"
    };
}

/// `$1` … `$5`: the attempt's key.
macro_rules! key_is {
    () => {
        "rollout_id = $1 AND server = $2 AND assignment_id = $3 AND step_index = $4 AND attempt = $5"
    };
}

/// Binds the key's five parts to `$1` … `$5`.
macro_rules! bind_key {
    ($query:expr, $key:expr) => {
        $query
            .bind($key.rollout_id)
            .bind(&$key.server)
            .bind(&$key.assignment_id)
            .bind($key.step_index)
            .bind($key.attempt)
    };
}

/// Deletes the attempt's oldest tail chunks (and cuts the oldest one left at a line) until its
/// tail holds at most `$limit` bytes, counting what goes in `$a`.
macro_rules! trim_tail {
    ($tx:expr, $key:expr, $a:expr, $limit:expr) => {
        while $a.tail_bytes > $limit {
            const OLDEST: &str = concat!(
                "SELECT chunk_seq, bytes FROM step_output WHERE ",
                key_is!(),
                " AND chunk_seq > $6 ORDER BY chunk_seq LIMIT 1"
            );
            const DELETE: &str = concat!(
                "DELETE FROM step_output WHERE ",
                key_is!(),
                " AND chunk_seq = $6 RETURNING lines"
            );
            const TEXT: &str = concat!(
                "SELECT text FROM step_output WHERE ",
                key_is!(),
                " AND chunk_seq = $6"
            );
            const CUT: &str = concat!(
                "UPDATE step_output SET text = $7, lines = lines - $8, bytes = bytes - $9 WHERE ",
                key_is!(),
                " AND chunk_seq = $6"
            );
            let head_end = $a.head_end_seq.unwrap_or(0);
            let oldest: Option<(i64, i64)> = bind_key!(sqlx::query_as(OLDEST), $key)
                .bind(head_end)
                .fetch_optional(&mut *$tx)
                .await?;
            // The counters say there is more tail than there are rows: nothing left to drop.
            let Some((seq, bytes)) = oldest else { break };
            let excess = $a.tail_bytes - $limit;
            if bytes <= excess {
                let lines: i64 = bind_key!(sqlx::query_scalar(DELETE), $key)
                    .bind(seq)
                    .fetch_one(&mut *$tx)
                    .await?;
                $a.tail_lines -= lines;
                $a.tail_bytes -= bytes;
                $a.dropped_lines += lines;
                $a.dropped_bytes += bytes;
            } else {
                let text: String = bind_key!(sqlx::query_scalar(TEXT), $key)
                    .bind(seq)
                    .fetch_one(&mut *$tx)
                    .await?;
                let (lines, cut) = leading_lines(&text, excess);
                bind_key!(sqlx::query(CUT), $key)
                    .bind(seq)
                    .bind(&text[cut as usize..])
                    .bind(lines)
                    .bind(cut)
                    .execute(&mut *$tx)
                    .await?;
                $a.tail_lines -= lines;
                $a.tail_bytes -= cut;
                $a.dropped_lines += lines;
                $a.dropped_bytes += cut;
            }
        }
    };
}

/// The fewest leading lines of `text` (lines joined with '\n') that make at least `bytes`
/// bytes with their newlines: how many, and how many bytes (where the rest of `text` begins).
/// Never all of them when `text` holds more than `bytes` plus one.
fn leading_lines(text: &str, bytes: i64) -> (i64, i64) {
    let (mut lines, mut taken) = (0i64, 0i64);
    for line in text.split('\n') {
        if taken >= bytes {
            break;
        }
        lines += 1;
        taken += line.len() as i64 + 1;
    }
    (lines, taken.min(text.len() as i64))
}

/// Bytes of a line with its newline.
fn line_bytes(line: &str) -> i64 {
    line.len() as i64 + 1
}

/// How a reader should be told that lines were dropped: "12,345 lines (1.2 MiB)".
pub fn dropped_text(lines: i64, bytes: i64) -> String {
    let noun = if lines == 1 { "line" } else { "lines" };
    format!("{} {noun} ({})", thousands(lines), human_bytes(bytes))
}

/// `1234567` → `"1,234,567"`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Binary units, one decimal past KiB: `"512 B"`, `"1.2 MiB"`.
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

impl Store {
    /// The same store with another cap on each step attempt's output (at least 2 bytes): half
    /// for its head, half for its tail. Default [`DEFAULT_MAX_STEP_OUTPUT`].
    pub fn with_max_step_output(mut self, bytes: u64) -> Store {
        self.max_step_output = bytes.max(2);
        self
    }

    /// The cap on each step attempt's stored output, in bytes.
    pub fn max_step_output(&self) -> u64 {
        self.max_step_output
    }

    /// Stores a chunk of a step attempt's output and keeps the attempt within the cap: into
    /// the head while it has room (a chunk that fills it is split at a line), then into the
    /// tail, whose oldest lines go when it is over its half. Returns the attempt's counters.
    pub async fn append_step_output(
        &self,
        output: &NewStepOutput,
    ) -> Result<StepOutputAttempt, StoreError> {
        let mut counted = self
            .append_step_outputs(std::slice::from_ref(output))
            .await?;
        Ok(counted.pop().expect("one count per chunk"))
    }

    /// [`Store::append_step_output`] for several chunks, in order, in ONE transaction (the
    /// owner loop's batch): all or none. Returns each chunk's attempt counters after it.
    pub async fn append_step_outputs(
        &self,
        outputs: &[NewStepOutput],
    ) -> Result<Vec<StepOutputAttempt>, StoreError> {
        const BUMP: &str = concat!(
            "UPDATE step_output_attempts SET last_chunk_seq = last_chunk_seq + 1 WHERE ",
            key_is!(),
            " RETURNING ",
            attempt_columns!()
        );
        const CREATE: &str = concat!(
            "INSERT INTO step_output_attempts (",
            attempt_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, \
             (SELECT COALESCE(MAX(ord), 0) + 1 FROM step_output_attempts \
              WHERE rollout_id = $1 AND server = $2), \
             $7, 1, 0, 0, NULL, 0, 0, 0, 0, 0) RETURNING ",
            attempt_columns!()
        );
        const INSERT: &str = concat!(
            "INSERT INTO step_output (",
            chunk_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        const SAVE: &str = concat!(
            "UPDATE step_output_attempts SET last_chunk_seq = $6, lines = $7, bytes = $8, \
             head_end_seq = $9, head_bytes = $10, tail_lines = $11, tail_bytes = $12, \
             dropped_lines = $13, dropped_bytes = $14 WHERE ",
            key_is!()
        );
        if outputs.is_empty() {
            return Ok(Vec::new());
        }
        let head_limit = i64::try_from(self.max_step_output / 2).unwrap_or(i64::MAX);
        let tail_limit =
            i64::try_from(self.max_step_output - self.max_step_output / 2).unwrap_or(i64::MAX);
        let at_ms = now_ms();
        with_pool!(self, |p| {
            async {
                let mut tx = p.begin().await?;
                let mut counted = Vec::with_capacity(outputs.len());
                for output in outputs {
                    let key = &output.key;
                    let lines: Vec<&str> = output.text.split('\n').collect();
                    let bumped: Option<StepOutputAttempt> = bind_key!(sqlx::query_as(BUMP), key)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let mut a = match bumped {
                        Some(a) => a,
                        None => {
                            bind_key!(sqlx::query_as::<_, StepOutputAttempt>(CREATE), key)
                                .bind(&output.step_id)
                                .bind(at_ms)
                                .fetch_one(&mut *tx)
                                .await?
                        }
                    };
                    // The first chunk written now takes the bumped number.
                    let mut seq = a.last_chunk_seq;
                    let mut rest = &lines[..];
                    let mut parts: Vec<(i64, &[&str])> = Vec::new();
                    if a.head_end_seq.is_none() {
                        let mut taken = 0;
                        while taken < rest.len()
                            && a.head_bytes + line_bytes(rest[taken]) <= head_limit
                        {
                            a.head_bytes += line_bytes(rest[taken]);
                            taken += 1;
                        }
                        if taken > 0 {
                            parts.push((seq, &rest[..taken]));
                            seq += 1;
                        }
                        if taken < rest.len() {
                            // Full: the head ends with the chunk before this one's tail part.
                            a.head_end_seq = Some(seq - 1);
                        }
                        rest = &rest[taken..];
                    }
                    if !rest.is_empty() {
                        a.tail_lines += rest.len() as i64;
                        a.tail_bytes += rest.iter().map(|l| line_bytes(l)).sum::<i64>();
                        parts.push((seq, rest));
                        seq += 1;
                    }
                    a.last_chunk_seq = seq - 1;
                    a.lines += lines.len() as i64;
                    a.bytes += lines.iter().map(|l| line_bytes(l)).sum::<i64>();
                    for (chunk_seq, part) in parts {
                        let text = part.join("\n");
                        let bytes = text.len() as i64 + 1;
                        bind_key!(sqlx::query(INSERT), key)
                            .bind(chunk_seq)
                            .bind(at_ms)
                            .bind(output.stderr)
                            .bind(part.len() as i64)
                            .bind(bytes)
                            .bind(text)
                            .execute(&mut *tx)
                            .await?;
                    }
                    trim_tail!(tx, key, a, tail_limit);
                    bind_key!(sqlx::query(SAVE), key)
                        .bind(a.last_chunk_seq)
                        .bind(a.lines)
                        .bind(a.bytes)
                        .bind(a.head_end_seq)
                        .bind(a.head_bytes)
                        .bind(a.tail_lines)
                        .bind(a.tail_bytes)
                        .bind(a.dropped_lines)
                        .bind(a.dropped_bytes)
                        .execute(&mut *tx)
                        .await?;
                    counted.push(a);
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(counted)
            }
            .await
        })
        .map_err(StoreError::query(match outputs {
            [output] => format!(
                "storing output of step {} attempt {} on {} (rollout {})",
                output.key.step_index, output.key.attempt, output.key.server, output.key.rollout_id
            ),
            _ => format!("storing {} chunks of step output", outputs.len()),
        }))
    }

    /// Deletes an attempt's oldest tail chunks (cutting the oldest one left at a line) until
    /// its tail holds at most `tail_bytes`, and counts what went as dropped. Appends do this
    /// with half the cap; this is for shrinking what is stored. `None`: no such attempt.
    pub async fn trim_step_output(
        &self,
        key: &StepOutputKey,
        tail_bytes: u64,
    ) -> Result<Option<StepOutputAttempt>, StoreError> {
        const LOCK: &str = concat!(
            "UPDATE step_output_attempts SET last_chunk_seq = last_chunk_seq WHERE ",
            key_is!(),
            " RETURNING ",
            attempt_columns!()
        );
        const SAVE: &str = concat!(
            "UPDATE step_output_attempts SET tail_lines = $6, tail_bytes = $7, \
             dropped_lines = $8, dropped_bytes = $9 WHERE ",
            key_is!()
        );
        let limit = i64::try_from(tail_bytes).unwrap_or(i64::MAX);
        with_pool!(self, |p| {
            async {
                let mut tx = p.begin().await?;
                let found: Option<StepOutputAttempt> = bind_key!(sqlx::query_as(LOCK), key)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(mut a) = found else {
                    return Ok(None);
                };
                trim_tail!(tx, key, a, limit);
                bind_key!(sqlx::query(SAVE), key)
                    .bind(a.tail_lines)
                    .bind(a.tail_bytes)
                    .bind(a.dropped_lines)
                    .bind(a.dropped_bytes)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(Some(a))
            }
            .await
        })
        .map_err(StoreError::query(format!(
            "trimming output of step {} attempt {} on {} (rollout {})",
            key.step_index, key.attempt, key.server, key.rollout_id
        )))
    }

    /// One attempt's counters, if it wrote anything.
    pub async fn step_output_attempt(
        &self,
        key: &StepOutputKey,
    ) -> Result<Option<StepOutputAttempt>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM step_output_attempts WHERE ",
            key_is!()
        );
        with_pool!(self, |p| {
            bind_key!(sqlx::query_as::<_, StepOutputAttempt>(SQL), key)
                .fetch_optional(p)
                .await
        })
        .map_err(StoreError::query(format!(
            "reading the output counters of step {} attempt {} on {} (rollout {})",
            key.step_index, key.attempt, key.server, key.rollout_id
        )))
    }

    /// A server's step attempts that wrote output in a rollout, in the order they began to
    /// write. `server` as its fleet writes it.
    pub async fn step_output_attempts(
        &self,
        rollout_id: i64,
        server: &str,
        filter: &StepOutputFilter,
    ) -> Result<Vec<StepOutputAttempt>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM step_output_attempts WHERE rollout_id = $1 AND server = $2 \
             AND ($3 IS NULL OR assignment_id = $3) AND ($4 IS NULL OR step_id = $4) ORDER BY ord"
        );
        with_pool!(self, |p| {
            sqlx::query_as::<_, StepOutputAttempt>(SQL)
                .bind(rollout_id)
                .bind(server)
                .bind(filter.assignment_id.as_deref())
                .bind(filter.step_id.as_deref())
                .fetch_all(p)
                .await
        })
        .map_err(StoreError::query(format!(
            "listing the output of {server} in rollout {rollout_id}"
        )))
    }

    /// The newest rollout in which `server` (any case) wrote output.
    pub async fn latest_step_output_rollout(
        &self,
        server: &str,
    ) -> Result<Option<i64>, StoreError> {
        const SQL: &str =
            "SELECT MAX(rollout_id) FROM step_output_attempts WHERE lower(server) = lower($1)";
        with_pool!(self, |p| {
            sqlx::query_scalar::<_, Option<i64>>(SQL)
                .bind(server)
                .fetch_one(p)
                .await
        })
        .map_err(StoreError::query(format!(
            "looking for the newest output of {server}"
        )))
    }

    /// Reads a server's output in a rollout from where `cursor` stands: each attempt's new
    /// chunks in order (attempts in the order they began to write), with a
    /// [`OutputItem::Dropped`] where lines went before they could be read. At most about
    /// `max_chunks` chunks per call: call again until it returns nothing. A new cursor reads
    /// everything.
    pub async fn read_step_output(
        &self,
        rollout_id: i64,
        server: &str,
        filter: &StepOutputFilter,
        cursor: &mut OutputCursor,
        max_chunks: usize,
    ) -> Result<Vec<OutputItem>, StoreError> {
        let mut items = Vec::new();
        let mut budget = max_chunks.max(1);
        for attempt in self
            .step_output_attempts(rollout_id, server, filter)
            .await?
        {
            let key = attempt.key();
            let seen = cursor.seen.entry(key.clone()).or_default();
            if attempt.last_chunk_seq <= seen.last_seq {
                continue;
            }
            loop {
                if budget == 0 {
                    return Ok(items);
                }
                let Some(page) = self.output_page(&key, seen.last_seq, budget).await? else {
                    break;
                };
                let read = page.chunks.len();
                budget -= read.min(budget);
                let more = page
                    .chunks
                    .last()
                    .is_some_and(|c| c.chunk_seq < page.attempt.last_chunk_seq)
                    && read > 0;
                emit_page(page, seen, !more, &mut items);
                if !more {
                    break;
                }
            }
        }
        Ok(items)
    }

    /// One attempt as of one instant (a read-only transaction, repeatable read): its row, the
    /// size of its tail after `after`, and up to `limit` chunks after `after`.
    async fn output_page(
        &self,
        key: &StepOutputKey,
        after: i64,
        limit: usize,
    ) -> Result<Option<Page>, StoreError> {
        const ATTEMPT: &str = concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM step_output_attempts WHERE ",
            key_is!()
        );
        const UNREAD_TAIL: &str = concat!(
            "SELECT CAST(COALESCE(SUM(lines), 0) AS BIGINT), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) \
             FROM step_output WHERE ",
            key_is!(),
            " AND chunk_seq > $6"
        );
        const CHUNKS: &str = concat!(
            "SELECT ",
            chunk_columns!(),
            " FROM step_output WHERE ",
            key_is!(),
            " AND chunk_seq > $6 ORDER BY chunk_seq LIMIT $7"
        );
        let postgres = self.backend() == crate::Backend::Postgres;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        with_pool!(self, |p| {
            async {
                let mut tx = p.begin().await?;
                if postgres {
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        .execute(&mut *tx)
                        .await?;
                }
                let found: Option<StepOutputAttempt> = bind_key!(sqlx::query_as(ATTEMPT), key)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(attempt) = found else {
                    return Ok(None);
                };
                let unread_tail = match attempt.head_end_seq {
                    Some(head_end) => {
                        bind_key!(sqlx::query_as::<_, (i64, i64)>(UNREAD_TAIL), key)
                            .bind(after.max(head_end))
                            .fetch_one(&mut *tx)
                            .await?
                    }
                    None => (0, 0),
                };
                let chunks: Vec<StepOutputChunk> = bind_key!(sqlx::query_as(CHUNKS), key)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(Some(Page {
                    attempt,
                    unread_tail,
                    chunks,
                }))
            }
            .await
        })
        .map_err(StoreError::query(format!(
            "reading output of step {} attempt {} on {} (rollout {})",
            key.step_index, key.attempt, key.server, key.rollout_id
        )))
    }
}

/// Turns a page into items, moving `seen` on. Lines dropped from the tail that the reader has
/// not read are announced once, where they were: before the first tail chunk it reads next
/// (or, on the page that ends the attempt for now, at its end). What was ever in the tail is
/// what is dropped plus what is there; the reader has read or been told of `seen.tail_*` of
/// it; what is there and unread is `unread_tail`; the rest went unread.
fn emit_page(page: Page, seen: &mut Seen, complete: bool, items: &mut Vec<OutputItem>) {
    let a = &page.attempt;
    let step_id = &a.step_id;
    let mut note = a.head_end_seq.and_then(|_| {
        let lines = a.dropped_lines + a.tail_lines - seen.tail_lines - page.unread_tail.0;
        let bytes = a.dropped_bytes + a.tail_bytes - seen.tail_bytes - page.unread_tail.1;
        (lines > 0 || bytes > 0).then_some((lines, bytes))
    });
    let mut announce = |seen: &mut Seen, items: &mut Vec<OutputItem>| {
        if let Some((lines, bytes)) = note.take() {
            seen.tail_lines += lines;
            seen.tail_bytes += bytes;
            items.push(OutputItem::Dropped {
                key: a.key(),
                step_id: step_id.clone(),
                lines,
                bytes,
            });
        }
    };
    for chunk in page.chunks {
        let in_tail = a
            .head_end_seq
            .is_some_and(|head_end| chunk.chunk_seq > head_end);
        if in_tail {
            announce(seen, items);
            seen.tail_lines += chunk.lines;
            seen.tail_bytes += chunk.bytes;
        }
        seen.last_seq = chunk.chunk_seq;
        items.push(OutputItem::Chunk {
            step_id: step_id.clone(),
            chunk,
        });
    }
    if complete {
        announce(seen, items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_lines_cover_the_excess() {
        // "ab\ncd\ne": lines of 3, 3 and 2 bytes with their newlines.
        assert_eq!(leading_lines("ab\ncd\ne", 1), (1, 3));
        assert_eq!(leading_lines("ab\ncd\ne", 3), (1, 3));
        assert_eq!(leading_lines("ab\ncd\ne", 4), (2, 6));
        assert_eq!(leading_lines("ab\ncd\ne", 0), (0, 0));
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(12_345), "12,345");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1_258_291), "1.2 MiB");
        assert_eq!(dropped_text(1, 7), "1 line (7 B)");
        assert_eq!(dropped_text(12_345, 1_258_291), "12,345 lines (1.2 MiB)");
    }
}
