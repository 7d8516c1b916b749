//! One attempt of one step: spawn the shell, stream its output in batches of lines, enforce the
//! timeout.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::time::Instant;

use crate::shell::CommandLine;

/// Longer lines are cut here (and end with [`CUT_NOTE`]), so that a line always fits in a
/// batch and a line without end cannot exhaust memory. The rest of a cut line is skipped.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// What a cut line ends with.
pub const CUT_NOTE: &str = " [… cut by baton-worker: the line is longer than 64 KiB]";

/// A stream's output goes to the controller as one `StepOutput` when the lines waiting reach
/// about this size…
pub const BATCH_BYTES: usize = 64 * 1024;

/// …or this long after the first of them, whichever comes first (and at the end of the
/// attempt, before its result).
pub const BATCH_DELAY: Duration = Duration::from_millis(200);

/// How long to keep reading output after the process ended. Normally the pipes close with the
/// process; a background process it left behind may hold them open, and must not hold up the
/// step.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The process exited with this code.
    Exited(i32),
    /// The process was killed by this signal (Unix), not by us.
    Signaled(i32),
    /// The timeout passed; the process (and its process group on Unix) was killed.
    TimedOut,
    /// The process could not be started (or waited for).
    CouldNotStart(String),
}

impl AttemptOutcome {
    pub fn succeeded(&self) -> bool {
        *self == Self::Exited(0)
    }

    /// `StepFinished.exit_code`: -1 when there is no exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Exited(code) => *code,
            _ => -1,
        }
    }
}

/// Whole lines of one stream, in the order written: what one `StepOutput` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputBatch {
    /// The lines, without their line endings, joined with '\n'.
    pub text: String,
    /// How many (at least 1).
    pub lines: u32,
    pub stderr: bool,
}

/// Receives each batch of output lines.
pub type OutputSink<'a> = &'a (dyn Fn(OutputBatch) + Send + Sync);

/// The lines of one stream waiting to be sent.
#[derive(Debug, Default)]
struct Batch {
    text: String,
    lines: u32,
    /// When its first line came.
    since: Option<Instant>,
}

impl Batch {
    /// When it must go, if it holds anything.
    fn due(&self) -> Option<Instant> {
        self.since.map(|since| since + BATCH_DELAY)
    }

    fn take(&mut self, stderr: bool) -> Option<OutputBatch> {
        self.since.take()?;
        Some(OutputBatch {
            text: std::mem::take(&mut self.text),
            lines: std::mem::take(&mut self.lines),
            stderr,
        })
    }

    /// Adds a line. What would grow past [`BATCH_BYTES`] goes to `sink` first, and a batch
    /// that reaches it goes at once.
    fn push(&mut self, line: &str, stderr: bool, sink: OutputSink<'_>) {
        if self.lines > 0 && self.text.len() + 1 + line.len() > BATCH_BYTES {
            self.flush(stderr, sink);
        }
        if self.lines > 0 {
            self.text.push('\n');
        } else {
            self.since = Some(Instant::now());
        }
        self.text.push_str(line);
        self.lines += 1;
        if self.text.len() >= BATCH_BYTES {
            self.flush(stderr, sink);
        }
    }

    fn flush(&mut self, stderr: bool, sink: OutputSink<'_>) {
        if let Some(batch) = self.take(stderr) {
            sink(batch);
        }
    }
}

fn lock(batch: &Mutex<Batch>) -> MutexGuard<'_, Batch> {
    batch.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `command` once. Its output goes to `on_output` in batches per stream (see
/// [`BATCH_BYTES`], [`BATCH_DELAY`]), all of it before this returns. `timeout` of `None` waits
/// forever. Never panics on a failing process: every failure is an [`AttemptOutcome`].
pub async fn run_attempt(
    command: &CommandLine,
    timeout: Option<Duration>,
    on_output: OutputSink<'_>,
) -> AttemptOutcome {
    let mut cmd = tokio::process::Command::new(&command.program);
    cmd.args(&command.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A dropped attempt (worker shutting down) must not leave its process behind.
        .kill_on_drop(true);
    // Its own process group, so a timeout kills what the shell started too.
    #[cfg(unix)]
    cmd.process_group(0);

    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => {
            return AttemptOutcome::CouldNotStart(format!(
                "{}: {err}",
                Path::new(&command.program).display()
            ));
        }
    };
    let mut group = GroupKiller::new(child.id());

    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let batches = [Mutex::new(Batch::default()), Mutex::new(Batch::default())];
    let readers = async {
        tokio::join!(
            pump_lines(stdout, false, &batches[0], on_output),
            pump_lines(stderr, true, &batches[1], on_output)
        )
    };
    tokio::pin!(readers);
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));

    // Read output while waiting: a process blocked on a full pipe would never exit.
    let mut readers_done = false;
    let waited = loop {
        tokio::select! {
            status = child.wait() => break Some(status),
            () = sleep_until(deadline) => break None,
            _ = &mut readers, if !readers_done => readers_done = true,
        }
    };

    let outcome = match waited {
        Some(Ok(status)) => {
            // Reaped: the process group id may be reused from now on.
            group.disarm();
            exit_outcome(status)
        }
        Some(Err(err)) => AttemptOutcome::CouldNotStart(format!("waiting for the process: {err}")),
        None => {
            // Kill the group while its leader is unreaped (its id cannot be reused yet).
            group.kill();
            let _ = child.kill().await;
            group.disarm();
            AttemptOutcome::TimedOut
        }
    };

    if !readers_done {
        let _ = tokio::time::timeout(OUTPUT_GRACE, &mut readers).await;
    }
    // What readers given up on after the grace period still held.
    for (batch, stderr) in batches.iter().zip([false, true]) {
        lock(batch).flush(stderr, on_output);
    }
    outcome
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn exit_outcome(status: std::process::ExitStatus) -> AttemptOutcome {
    if let Some(code) = status.code() {
        return AttemptOutcome::Exited(code);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return AttemptOutcome::Signaled(signal);
        }
    }
    AttemptOutcome::Exited(-1)
}

/// Reads the lines of `stream` into `batch` until end of file, lossily decoded (Windows tools
/// may not write UTF-8), sending it to `sink` when it is full or due, and what is left at the
/// end.
async fn pump_lines<R: AsyncRead + Unpin>(
    stream: Option<R>,
    stderr: bool,
    batch: &Mutex<Batch>,
    sink: OutputSink<'_>,
) {
    let Some(stream) = stream else { return };
    let mut reader = BufReader::new(stream);
    // The line being read. A read interrupted by the batch's timer keeps what it read here
    // (`read_until` is cancel-safe that way) and the next read goes on from it.
    let mut buf = Vec::new();
    // In the rest of a line that was cut: skipped up to its end.
    let mut skipping = false;
    loop {
        let due = lock(batch).due();
        let mut limited = (&mut reader).take((MAX_LINE_BYTES - buf.len()) as u64);
        tokio::select! {
            read = limited.read_until(b'\n', &mut buf) => match read {
                Ok(0) => {
                    // End of file, after a last line without a line ending, if any.
                    if !buf.is_empty() && !skipping {
                        lock(batch).push(&String::from_utf8_lossy(&buf), stderr, sink);
                    }
                    break;
                }
                Ok(_) => {
                    let ended = buf.last() == Some(&b'\n');
                    if skipping {
                        skipping = !ended;
                        buf.clear();
                    } else if ended {
                        let line = String::from_utf8_lossy(trim_line_ending(&buf));
                        lock(batch).push(&line, stderr, sink);
                        buf.clear();
                    } else if buf.len() >= MAX_LINE_BYTES {
                        let line = format!("{}{CUT_NOTE}", String::from_utf8_lossy(&buf));
                        lock(batch).push(&line, stderr, sink);
                        buf.clear();
                        skipping = true;
                    }
                    // Else the stream ended inside a line: the next read says so.
                }
                Err(err) => {
                    tracing::debug!(%err, stderr, "reading step output failed");
                    break;
                }
            },
            () = sleep_until(due) => lock(batch).flush(stderr, sink),
        }
    }
    lock(batch).flush(stderr, sink);
}

fn trim_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Kills a step's process group (Unix) unless disarmed: on timeout, and on drop when the
/// attempt is abandoned (worker shutdown), so nothing the step started keeps running.
struct GroupKiller {
    pid: Option<u32>,
}

impl GroupKiller {
    fn new(pid: Option<u32>) -> Self {
        Self { pid }
    }

    fn disarm(&mut self) {
        self.pid = None;
    }

    fn kill(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.pid.and_then(|pid| i32::try_from(pid).ok())
            // 0 and 1 would mean "our own group" and "everything": never.
            && pid > 1
        {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is
            // involved. The group exists: its leader is our child and not yet reaped.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        // Elsewhere tokio's kill (TerminateProcess) ends the shell itself.
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_are_trimmed() {
        assert_eq!(trim_line_ending(b"a\r\n"), b"a");
        assert_eq!(trim_line_ending(b"a\n"), b"a");
        assert_eq!(trim_line_ending(b"a"), b"a");
        assert_eq!(trim_line_ending(b"a\r"), b"a");
    }

    /// Runs `sh -c SCRIPT` and returns what it wrote, batch by batch.
    async fn batches_of(script: &str) -> (AttemptOutcome, Vec<OutputBatch>) {
        let line = CommandLine {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
        };
        let batches = Mutex::new(Vec::new());
        let outcome = run_attempt(&line, None, &|b| batches.lock().unwrap().push(b)).await;
        (outcome, batches.into_inner().unwrap())
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_say_so() {
        let (outcome, batches) = batches_of(&format!(
            "head -c {} /dev/zero | tr '\\0' x; echo; echo next",
            MAX_LINE_BYTES + 10
        ))
        .await;
        assert_eq!(outcome, AttemptOutcome::Exited(0));
        let text: Vec<&str> = batches.iter().map(|b| b.text.as_str()).collect();
        let cut = format!("{}{CUT_NOTE}", "x".repeat(MAX_LINE_BYTES));
        // The cut line fills a batch by itself; the line after it is whole.
        assert_eq!(text, [cut.as_str(), "next"]);
        assert_eq!(batches.iter().map(|b| b.lines).sum::<u32>(), 2);
    }

    #[tokio::test]
    async fn a_quick_attempt_sends_each_stream_once_with_every_line() {
        let (outcome, batches) =
            batches_of("echo one; echo oops >&2; printf 'two\\r\\n'; printf 'three'").await;
        assert_eq!(outcome, AttemptOutcome::Exited(0));
        let mut batches = batches;
        batches.sort_by_key(|b| b.stderr);
        assert_eq!(
            batches,
            [
                OutputBatch {
                    text: "one\ntwo\nthree".into(),
                    lines: 3,
                    stderr: false
                },
                OutputBatch {
                    text: "oops".into(),
                    lines: 1,
                    stderr: true
                },
            ]
        );
    }

    /// The batching itself, on paused time over an in-memory pipe: a batch goes 200 ms after
    /// its first line, or at once when the next line would take it past 64 KiB, and what is
    /// left goes at the end of the stream.
    #[tokio::test(start_paused = true)]
    async fn output_goes_at_64_kib_or_200_ms_after_its_first_line() {
        use tokio::io::AsyncWriteExt as _;
        use tokio::time::sleep;
        let (mut writer, reader) = tokio::io::duplex(1 << 20);
        let start = Instant::now();
        let sent = Mutex::new(Vec::new());
        let sink = |b: OutputBatch| {
            sent.lock()
                .unwrap()
                .push((start.elapsed().as_millis() as u64, b.lines, b.text.len()));
        };
        let batch = Mutex::new(Batch::default());
        let wide = format!("{}\n", "w".repeat(999)).repeat(100);
        let feed = async {
            writer.write_all(b"a\n").await.unwrap();
            sleep(Duration::from_millis(50)).await;
            writer.write_all(b"b\n").await.unwrap();
            sleep(Duration::from_millis(300)).await;
            // t = 350: 100 lines of 1,000 bytes with their newlines, at once.
            writer.write_all(wide.as_bytes()).await.unwrap();
            sleep(Duration::from_millis(300)).await;
            // t = 650: a line, half a line, and the end of the stream.
            writer.write_all(b"tail\nno newline").await.unwrap();
            drop(writer);
        };
        tokio::join!(pump_lines(Some(reader), false, &batch, &sink), feed);
        assert_eq!(
            sent.into_inner().unwrap(),
            [
                // "a" and "b", 200 ms after "a".
                (200, 2, 3),
                // 65 lines are 65,064 bytes; a 66th would make 66,065 > 64 KiB: sent at once.
                (350, 65, 65 * 1000 - 1),
                // The other 35, 200 ms after the first of them.
                (550, 35, 35 * 1000 - 1),
                // The rest, at the end of the stream.
                (650, 2, "tail\nno newline".len()),
            ]
        );
    }
}
