//! `baton logs SERVER`: what a server's steps wrote, one line per output line, flushed as it
//! comes.

use super::{Controller, write_out};
use anyhow::Result;
use baton_proto::v1::{LogChunk, LogsRequest};

pub async fn run(
    controller: &mut Controller,
    server: String,
    rollout: Option<String>,
    step: Option<String>,
    follow: bool,
) -> Result<()> {
    // One step asked for: its lines as they are. Else each line says its step.
    let one_step = step.is_some();
    let request = LogsRequest {
        server,
        rollout_id: rollout.unwrap_or_default(),
        step: step.unwrap_or_default(),
        follow,
    };
    let mut stream = controller
        .client
        .step_logs(request)
        .await
        .map_err(|s| controller.error(&s))?
        .into_inner();
    while let Some(chunk) = stream.message().await.map_err(|s| controller.error(&s))? {
        write_out(&render(&chunk, one_step))?;
    }
    Ok(())
}

/// The chunk's lines, each with its prefix: `STEP: ` when several steps are shown (with
/// ` (attempt N)` after a retry), `[stderr] ` for stderr; a drop note as one line.
pub fn render(chunk: &LogChunk, one_step: bool) -> String {
    let label = match (one_step, chunk.attempt) {
        (true, 0 | 1) => String::new(),
        (true, attempt) => format!("attempt {attempt}: "),
        (false, 0 | 1) => format!("{}: ", chunk.step),
        (false, attempt) => format!("{} (attempt {attempt}): ", chunk.step),
    };
    if !chunk.note.is_empty() {
        return format!("{label}{}", chunk.note);
    }
    let stream = if chunk.stderr { "[stderr] " } else { "" };
    let mut out = String::with_capacity(chunk.text.len() + 32);
    for line in chunk.text.split('\n') {
        out.push_str(&label);
        out.push_str(stream);
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(step: &str, attempt: u32, stderr: bool, text: &str) -> LogChunk {
        LogChunk {
            step: step.into(),
            attempt,
            stderr,
            text: text.into(),
            lines: text.split('\n').count() as u32,
            ..LogChunk::default()
        }
    }

    #[test]
    fn lines_say_their_step_and_stream() {
        assert_eq!(
            render(&chunk("patch", 1, false, "one\ntwo"), false),
            "patch: one\npatch: two\n"
        );
        assert_eq!(
            render(&chunk("patch", 2, true, "oops"), false),
            "patch (attempt 2): [stderr] oops\n"
        );
        assert_eq!(render(&chunk("patch", 1, false, "one\n"), true), "one\n\n");
        assert_eq!(
            render(&chunk("patch", 3, true, "oops"), true),
            "attempt 3: [stderr] oops\n"
        );
        let note = LogChunk {
            step: "patch".into(),
            attempt: 1,
            dropped_lines: 5,
            dropped_bytes: 50,
            note: "… 5 lines (50 B) dropped here …".into(),
            ..LogChunk::default()
        };
        assert_eq!(
            render(&note, false),
            "patch: … 5 lines (50 B) dropped here …"
        );
    }
}
