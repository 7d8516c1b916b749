//! One attempt of one step: spawn the shell, stream its output lines, enforce the timeout.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::time::Instant;

use crate::shell::CommandLine;

/// Longer lines are cut into pieces of this size, so that one `StepOutput` always fits in a
/// gRPC message (4 MiB by default) and a line without end cannot exhaust memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

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

/// Receives each output line (without its line ending) and whether it came from stderr.
pub type LineSink<'a> = &'a (dyn Fn(String, bool) + Send + Sync);

/// Runs `command` once. Output lines go to `on_line` as they come, all before this returns.
/// `timeout` of `None` waits forever. Never panics on a failing process: every failure is an
/// [`AttemptOutcome`].
pub async fn run_attempt(
    command: &CommandLine,
    timeout: Option<Duration>,
    on_line: LineSink<'_>,
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
    let readers = async {
        tokio::join!(
            pump_lines(stdout, false, on_line),
            pump_lines(stderr, true, on_line)
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

/// Sends each line of `stream` to `on_line`, lossily decoded (Windows tools may not write
/// UTF-8), until end of file.
async fn pump_lines<R: AsyncRead + Unpin>(stream: Option<R>, stderr: bool, on_line: LineSink<'_>) {
    let Some(stream) = stream else { return };
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) => return,
            Ok(_) => on_line(
                String::from_utf8_lossy(trim_line_ending(&buf)).into_owned(),
                stderr,
            ),
            Err(err) => {
                tracing::debug!(%err, stderr, "reading step output failed");
                return;
            }
        }
    }
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

    #[tokio::test]
    async fn long_lines_are_cut() {
        let line = CommandLine {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                format!(
                    "head -c {} /dev/zero | tr '\\0' x; echo",
                    MAX_LINE_BYTES + 10
                )
                .into(),
            ],
        };
        let lines = std::sync::Mutex::new(Vec::new());
        let outcome = run_attempt(&line, None, &|l, _| lines.lock().unwrap().push(l)).await;
        assert_eq!(outcome, AttemptOutcome::Exited(0));
        let lengths: Vec<usize> = lines
            .into_inner()
            .unwrap()
            .iter()
            .map(String::len)
            .collect();
        assert_eq!(lengths, [MAX_LINE_BYTES, 10]);
    }
}
