//! Runs an assignment's steps in order, with retries, and reports each attempt: for real in
//! shell processes, or simulated (sleeps only) for demos and tests.

use std::path::PathBuf;
use std::time::Duration;

use baton_proto::v1::{Assignment, Step};

use crate::process::{self, AttemptOutcome, OutputBatch};
use crate::report::Reporter;
use crate::shell;
use crate::trace::{self, LastAttempt};
use tracing::Instrument as _;

/// How assignments are carried out.
#[derive(Debug, Clone)]
pub enum Executor {
    Shell(ShellExecutor),
    Simulate(SimulateExecutor),
}

impl Executor {
    /// Runs `assignment` to its end and reports everything, `AssignmentFinished` last.
    /// Returns whether it succeeded.
    pub async fn run(&self, assignment: &Assignment, report: &Reporter) -> bool {
        let id = &assignment.assignment_id;
        tracing::info!(
            assignment = %id,
            rollout = %assignment.rollout_id,
            steps = assignment.steps.len(),
            "assignment started"
        );
        let result = match self {
            Self::Shell(shell) => shell.run(assignment, report).await,
            Self::Simulate(simulate) => simulate.run(assignment, report).await,
        };
        match result {
            Ok(()) => {
                tracing::info!(assignment = %id, "assignment succeeded");
                report.assignment_finished(id, true, String::new());
                true
            }
            Err(detail) => {
                tracing::warn!(assignment = %id, %detail, "assignment failed");
                report.assignment_finished(id, false, detail);
                false
            }
        }
    }
}

/// Runs each step in a fresh shell process.
#[derive(Debug, Clone, Default)]
pub struct ShellExecutor {
    /// `--shell PATH`: the program to run instead of `sh` / PowerShell (same arguments).
    pub program: Option<PathBuf>,
}

impl ShellExecutor {
    /// `Err(detail)` names the step that failed after its retries.
    async fn run(&self, assignment: &Assignment, report: &Reporter) -> Result<(), String> {
        let id = &assignment.assignment_id;
        for (index, step) in remaining_steps(assignment) {
            let span = trace::step_span(id, index, step);
            let mut last = LastAttempt::default();
            let result = if step.gate_interval_ms > 0 {
                self.gate(&assignment.shell, step, id, index, report, &mut last)
                    .instrument(span.clone())
                    .await
            } else {
                self.step(&assignment.shell, step, id, index, report, &mut last)
                    .instrument(span.clone())
                    .await
            };
            trace::record_end(&span, &last, &result);
            result?;
        }
        Ok(())
    }

    /// One step, with its retries.
    async fn step(
        &self,
        shell_name: &str,
        step: &Step,
        id: &str,
        index: u32,
        report: &Reporter,
        last: &mut LastAttempt,
    ) -> Result<(), String> {
        let attempts = step.retries.saturating_add(1);
        let mut outcome = AttemptOutcome::Exited(0);
        for attempt in 1..=attempts {
            let at = (shell_name, step, id, index, attempt);
            outcome = self
                .reported_attempt(at, report, step_timeout(step), last)
                .await?;
            if outcome.succeeded() {
                return Ok(());
            }
        }
        Err(failure_detail(step, &outcome))
    }

    /// A health gate: tries the command every `gate_interval_ms` until it succeeds, within the
    /// step's timeout (counted from the first try).
    async fn gate(
        &self,
        shell_name: &str,
        step: &Step,
        id: &str,
        index: u32,
        report: &Reporter,
        last: &mut LastAttempt,
    ) -> Result<(), String> {
        let interval = Duration::from_millis(step.gate_interval_ms);
        let deadline = step_timeout(step).map(|timeout| tokio::time::Instant::now() + timeout);
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let remaining =
                deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
            let at = (shell_name, step, id, index, attempt);
            let outcome = self.reported_attempt(at, report, remaining, last).await?;
            if outcome.succeeded() {
                return Ok(());
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() + interval >= d) {
                return Err(format!(
                    "gate {} did not pass within {} ({attempt} tries; the last: {})",
                    step.id,
                    format_millis(step.timeout_ms),
                    failure_detail(step, &outcome)
                ));
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// One attempt, reported (and journaled) from its start to its result. `Err`: it was not
    /// run, because its start could not be journaled.
    async fn reported_attempt(
        &self,
        (shell_name, step, id, index, attempt): (&str, &Step, &str, u32, u32),
        report: &Reporter,
        timeout: Option<Duration>,
        last: &mut LastAttempt,
    ) -> Result<AttemptOutcome, String> {
        report
            .step_started(id, index, attempt)
            .map_err(|err| not_started(step, &err))?;
        tracing::info!(assignment = %id, step = %step.id, attempt, "step started");
        let outcome = self
            .attempt(shell_name, step, (id, index, attempt), report, timeout)
            .await;
        report.step_finished(id, index, attempt, &outcome);
        last.set(attempt, &outcome);
        tracing::info!(assignment = %id, step = %step.id, attempt, ?outcome, "step finished");
        Ok(outcome)
    }

    /// Runs the attempt; its output goes out in batches, all before this returns (so before
    /// the attempt's result).
    async fn attempt(
        &self,
        shell_name: &str,
        step: &Step,
        (assignment_id, index, attempt): (&str, u32, u32),
        report: &Reporter,
        timeout: Option<Duration>,
    ) -> AttemptOutcome {
        let command = match shell::command_line(shell_name, self.program.as_deref(), &step.command)
        {
            Ok(command) => command,
            Err(err) => return AttemptOutcome::CouldNotStart(err.to_string()),
        };
        let on_output = |batch: OutputBatch| {
            tracing::debug!(step = %step.id, stderr = batch.stderr, lines = batch.lines, "{}", batch.text);
            report.step_output(assignment_id, index, attempt, batch);
        };
        process::run_attempt(&command, timeout, &on_output).await
    }
}

/// The steps still to run, with their indexes: all of them, or from `start_step` on when the
/// assignment resumes one that a worker restart interrupted.
fn remaining_steps(assignment: &Assignment) -> impl Iterator<Item = (u32, &Step)> {
    (0u32..)
        .zip(&assignment.steps)
        .skip(assignment.start_step as usize)
}

/// The failure of a step that was not run because its start could not be journaled.
fn not_started(step: &Step, err: &crate::journal::JournalError) -> String {
    format!("step {} not started: {err}", step.id)
}

/// `timeout_ms == 0` means no timeout (proto3's default: an unset field).
fn step_timeout(step: &Step) -> Option<Duration> {
    (step.timeout_ms > 0).then(|| Duration::from_millis(step.timeout_ms))
}

/// `AssignmentFinished.detail` for a step that failed for good.
fn failure_detail(step: &Step, outcome: &AttemptOutcome) -> String {
    let id = &step.id;
    match outcome {
        AttemptOutcome::Exited(code) => format!("step {id} exited {code}"),
        AttemptOutcome::Signaled(signal) => format!("step {id} was killed by signal {signal}"),
        AttemptOutcome::TimedOut => {
            format!(
                "step {id} timed out after {}",
                format_millis(step.timeout_ms)
            )
        }
        AttemptOutcome::CouldNotStart(error) => format!("step {id} could not start: {error}"),
    }
}

/// "200ms", "30s", "5m", "2h": the largest unit that divides exactly.
fn format_millis(ms: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(3_600_000, "h"), (60_000, "m"), (1000, "s")];
    UNITS
        .iter()
        .find(|(size, _)| ms > 0 && ms.is_multiple_of(*size))
        .map_or_else(
            || format!("{ms}ms"),
            |(size, unit)| format!("{}{unit}", ms / size),
        )
}

/// Pretends: every step succeeds after its share of the plan's expected duration, scaled.
#[derive(Debug, Clone)]
pub struct SimulateExecutor {
    /// 1.0 = real time, 0.01 = a hundred times faster. Finite and not negative.
    pub time_scale: f64,
}

impl Default for SimulateExecutor {
    fn default() -> Self {
        Self { time_scale: 1.0 }
    }
}

impl SimulateExecutor {
    async fn run(&self, assignment: &Assignment, report: &Reporter) -> Result<(), String> {
        let id = &assignment.assignment_id;
        let per_step = self.step_duration(assignment);
        for (index, step) in remaining_steps(assignment) {
            let span = trace::step_span(id, index, step);
            let mut last = LastAttempt::default();
            let result = async {
                report
                    .step_started(id, index, 1)
                    .map_err(|err| not_started(step, &err))?;
                tracing::info!(assignment = %id, step = %step.id, ?per_step, "simulating step");
                // A zero sleep still waits for the timer's next 1 ms tick: skip it.
                if !per_step.is_zero() {
                    tokio::time::sleep(per_step).await;
                }
                let outcome = AttemptOutcome::Exited(0);
                report.step_finished(id, index, 1, &outcome);
                last.set(1, &outcome);
                Ok(())
            }
            .instrument(span.clone())
            .await;
            trace::record_end(&span, &last, &result);
            result?;
        }
        Ok(())
    }

    /// `expected_duration_ms × time_scale / number_of_steps`.
    pub fn step_duration(&self, assignment: &Assignment) -> Duration {
        if assignment.steps.is_empty() {
            return Duration::ZERO;
        }
        let ms = assignment.expected_duration_ms as f64 * self.time_scale
            / assignment.steps.len() as f64;
        // Negative or NaN scale: no wait; absurdly long: as long as a Duration goes.
        Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(if ms > 0.0 {
            Duration::MAX
        } else {
            Duration::ZERO
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{TempDir, still_running};
    use baton_proto::v1::WorkerMessage;
    use baton_proto::v1::worker_message::Body;

    fn step(id: &str, command: &str) -> Step {
        Step {
            id: id.into(),
            command: command.into(),
            timeout_ms: 10_000,
            retries: 0,
            gate_interval_ms: 0,
            idempotent: false,
            ..Default::default()
        }
    }

    fn assignment(shell: &str, steps: Vec<Step>) -> Assignment {
        Assignment {
            assignment_id: "a1".into(),
            rollout_id: "r1".into(),
            shell: shell.into(),
            steps,
            expected_duration_ms: 0,
            epoch: 0,
            start_step: 0,
            store_id: String::new(),
        }
    }

    /// Runs to the end and returns every message sent, in order.
    async fn run(executor: Executor, assignment: &Assignment) -> (bool, Vec<Body>) {
        let (report, mut rx) = Reporter::channel();
        let succeeded = executor.run(assignment, &report).await;
        let mut bodies = Vec::new();
        while let Ok(WorkerMessage { body }) = rx.try_recv() {
            bodies.push(body.expect("every message has a body"));
        }
        (succeeded, bodies)
    }

    fn shell() -> Executor {
        Executor::Shell(ShellExecutor::default())
    }

    fn finished(bodies: &[Body]) -> (bool, String) {
        match bodies.last() {
            Some(Body::AssignmentFinished(f)) => {
                assert_eq!(f.assignment_id, "a1");
                (f.succeeded, f.detail.clone())
            }
            other => panic!("last message is not AssignmentFinished: {other:?}"),
        }
    }

    fn step_finishes(bodies: &[Body]) -> Vec<(u32, u32, i32, bool)> {
        bodies
            .iter()
            .filter_map(|b| match b {
                Body::StepFinished(f) => Some((f.step_index, f.attempt, f.exit_code, f.timed_out)),
                _ => None,
            })
            .collect()
    }

    fn starts(bodies: &[Body]) -> Vec<(u32, u32)> {
        bodies
            .iter()
            .filter_map(|b| match b {
                Body::StepStarted(s) => Some((s.step_index, s.attempt)),
                _ => None,
            })
            .collect()
    }

    /// The output lines of one stream, in order, out of their batches.
    fn lines(bodies: &[Body], stderr: bool) -> Vec<String> {
        bodies
            .iter()
            .filter_map(|b| match b {
                Body::StepOutput(o) if o.stderr == stderr => {
                    assert_eq!(o.text.split('\n').count(), o.lines as usize, "{o:?}");
                    Some(o.text.split('\n').map(str::to_string).collect::<Vec<_>>())
                }
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[tokio::test]
    async fn success_streams_stdout_and_stderr_lines() {
        let a = assignment(
            "sh",
            vec![
                step("s1", "echo out1; echo err1 >&2; printf 'out2\\r\\n'"),
                step("s2", "echo second"),
            ],
        );
        let (succeeded, bodies) = run(shell(), &a).await;
        assert!(succeeded);
        assert_eq!(finished(&bodies), (true, String::new()));
        assert_eq!(lines(&bodies, false), ["out1", "out2", "second"]);
        assert_eq!(lines(&bodies, true), ["err1"]);
        assert_eq!(starts(&bodies), [(0, 1), (1, 1)]);
        assert_eq!(step_finishes(&bodies), [(0, 1, 0, false), (1, 1, 0, false)]);
        // Per step: started, its output (one batch per stream), finished.
        assert!(matches!(bodies[0], Body::StepStarted(_)));
        assert!(matches!(&bodies[3], Body::StepFinished(f) if f.step_index == 0));
        assert!(
            matches!(&bodies[5], Body::StepOutput(o) if o.step_index == 1 && o.attempt == 1 && o.text == "second" && o.lines == 1 && o.line.is_empty())
        );
        assert_eq!(bodies.len(), 8);
    }

    /// 20,000 lines: a few batches of at most 64 KiB (and a line), every line once and in
    /// order, all between the attempt's start and its result.
    #[tokio::test]
    async fn much_output_goes_in_batches_before_the_result() {
        let a = assignment("sh", vec![step("count", "seq 1 20000")]);
        let (succeeded, bodies) = run(shell(), &a).await;
        assert!(succeeded);
        let want: Vec<String> = (1..=20000).map(|n| n.to_string()).collect();
        assert_eq!(lines(&bodies, false), want);
        let batches: Vec<&baton_proto::v1::StepOutput> = bodies
            .iter()
            .filter_map(|b| match b {
                Body::StepOutput(o) => Some(o),
                _ => None,
            })
            .collect();
        // 108,894 bytes of output: at least two batches, none past 64 KiB.
        assert!(batches.len() >= 2, "{} batches", batches.len());
        for batch in &batches {
            assert!(
                batch.text.len() <= process::BATCH_BYTES,
                "{}",
                batch.text.len()
            );
            assert_eq!((batch.step_index, batch.attempt), (0, 1));
        }
        assert!(matches!(bodies[0], Body::StepStarted(_)));
        let finished = bodies
            .iter()
            .position(|b| matches!(b, Body::StepFinished(_)))
            .expect("StepFinished");
        assert_eq!(finished, batches.len() + 1, "every batch before the result");
    }

    #[tokio::test]
    async fn non_zero_exit_fails_and_stops() {
        let a = assignment(
            "sh",
            vec![step("install", "exit 3"), step("never", "echo no")],
        );
        let (succeeded, bodies) = run(shell(), &a).await;
        assert!(!succeeded);
        assert_eq!(finished(&bodies), (false, "step install exited 3".into()));
        assert_eq!(starts(&bodies), [(0, 1)]);
        assert_eq!(step_finishes(&bodies), [(0, 1, 3, false)]);
    }

    #[tokio::test]
    async fn a_failed_attempt_is_retried() {
        let dir = TempDir::new();
        let marker = dir.path().join("ran-once");
        let command = format!(
            "if [ -e '{m}' ]; then echo second; else touch '{m}'; echo first; exit 1; fi",
            m = marker.display()
        );
        let mut s = step("flaky", &command);
        s.retries = 2;
        let (succeeded, bodies) = run(shell(), &assignment("sh", vec![s])).await;
        assert!(succeeded);
        assert_eq!(starts(&bodies), [(0, 1), (0, 2)]);
        assert_eq!(step_finishes(&bodies), [(0, 1, 1, false), (0, 2, 0, false)]);
        assert_eq!(lines(&bodies, false), ["first", "second"]);
    }

    #[tokio::test]
    async fn a_gate_is_tried_until_it_passes() {
        let dir = TempDir::new();
        let count = dir.path().join("tries");
        // Passes on the third try.
        let command = format!(
            "n=$(cat '{c}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{c}'; [ $n -ge 3 ]",
            c = count.display()
        );
        let mut gate = step("healthy", &command);
        gate.gate_interval_ms = 20;
        let (succeeded, bodies) = run(shell(), &assignment("sh", vec![gate])).await;
        assert!(succeeded, "{bodies:?}");
        assert_eq!(starts(&bodies), [(0, 1), (0, 2), (0, 3)]);
        assert_eq!(
            step_finishes(&bodies),
            [(0, 1, 1, false), (0, 2, 1, false), (0, 3, 0, false)]
        );
    }

    #[tokio::test]
    async fn a_gate_that_never_passes_fails_at_its_timeout() {
        let mut gate = step("healthy", "exit 1");
        gate.gate_interval_ms = 50;
        gate.timeout_ms = 200;
        let (succeeded, bodies) = run(shell(), &assignment("sh", vec![gate])).await;
        assert!(!succeeded);
        let (_, detail) = finished(&bodies);
        assert!(
            detail.starts_with("gate healthy did not pass within 200ms ("),
            "{detail}"
        );
        assert!(
            detail.ends_with("the last: step healthy exited 1)"),
            "{detail}"
        );
        assert!(
            starts(&bodies).len() >= 2,
            "tried more than once: {bodies:?}"
        );
    }

    #[tokio::test]
    async fn retries_run_out() {
        let mut s = step("s1", "exit 2");
        s.retries = 2;
        let (succeeded, bodies) = run(shell(), &assignment("sh", vec![s])).await;
        assert!(!succeeded);
        assert_eq!(starts(&bodies), [(0, 1), (0, 2), (0, 3)]);
        assert_eq!(finished(&bodies), (false, "step s1 exited 2".into()));
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let dir = TempDir::new();
        let bg_pid = dir.path().join("bg.pid");
        let sh_pid = dir.path().join("sh.pid");
        // A background child (same process group) and the shell itself, both recorded.
        let command = format!(
            "sleep 5 & echo $! > '{}'; echo $$ > '{}'; echo waiting; wait",
            bg_pid.display(),
            sh_pid.display()
        );
        let mut s = step("slow", &command);
        s.timeout_ms = 200;
        let started = std::time::Instant::now();
        let (succeeded, bodies) = run(shell(), &assignment("sh", vec![s])).await;
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
        assert!(!succeeded);
        assert_eq!(step_finishes(&bodies), [(0, 1, -1, true)]);
        assert_eq!(
            finished(&bodies),
            (false, "step slow timed out after 200ms".into())
        );
        assert_eq!(lines(&bodies, false), ["waiting"]);
        for file in [bg_pid, sh_pid] {
            let pid: u32 = std::fs::read_to_string(&file)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(
                !still_running(pid),
                "pid {pid} from {file:?} is still running"
            );
        }
    }

    #[tokio::test]
    async fn a_missing_shell_is_a_step_error() {
        let executor = Executor::Shell(ShellExecutor {
            program: Some("/nonexistent".into()),
        });
        let (succeeded, bodies) = run(executor, &assignment("sh", vec![step("s1", "true")])).await;
        assert!(!succeeded);
        let Some(Body::StepFinished(f)) = bodies.get(1) else {
            panic!("expected StepFinished: {bodies:?}")
        };
        assert_eq!((f.exit_code, f.timed_out), (-1, false));
        assert!(f.error.contains("/nonexistent"), "{}", f.error);
        let (_, detail) = finished(&bodies);
        assert!(
            detail.starts_with("step s1 could not start: /nonexistent"),
            "{detail}"
        );
    }

    #[tokio::test]
    async fn an_unknown_shell_is_a_step_error() {
        let (succeeded, bodies) = run(shell(), &assignment("bash", vec![step("s1", "true")])).await;
        assert!(!succeeded);
        let (_, detail) = finished(&bodies);
        assert_eq!(
            detail,
            "step s1 could not start: unknown shell \"bash\" (expected \"sh\" or \"powershell\")"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn powershell_gets_no_profile_non_interactive_command() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let record = dir.path().join("args.txt");
        let shim = dir.path().join("fake-powershell");
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\nfor arg in \"$@\"; do printf '%s\\n' \"$arg\" >> '{}'; done\necho ok\n",
                record.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let executor = Executor::Shell(ShellExecutor {
            program: Some(shim),
        });
        let mut s = step("iis", "Stop-Service W3SVC; Write-Output 'done'");
        // Exec of a just-written script can fail with ETXTBSY while another test thread forks
        // (it briefly inherits the write handle); a failed exec records nothing, so retry it.
        s.retries = 3;
        let (succeeded, bodies) = run(executor, &assignment("powershell", vec![s])).await;
        assert!(succeeded, "{bodies:?}");
        assert_eq!(lines(&bodies, false), ["ok"]);
        let recorded = std::fs::read_to_string(&record).unwrap();
        assert_eq!(
            recorded.lines().collect::<Vec<_>>(),
            [
                "-NoProfile",
                "-NonInteractive",
                "-Command",
                "Stop-Service W3SVC; Write-Output 'done'"
            ]
        );
    }

    #[tokio::test]
    async fn no_steps_succeeds() {
        let (succeeded, bodies) = run(shell(), &assignment("sh", vec![])).await;
        assert!(succeeded);
        assert_eq!(bodies.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn simulate_sleeps_a_scaled_share_per_step() {
        let mut a = assignment("powershell", vec![step("s1", "x"), step("s2", "y")]);
        a.expected_duration_ms = 10_000;
        let executor = Executor::Simulate(SimulateExecutor { time_scale: 0.5 });
        let (report, mut rx) = Reporter::channel();
        let start = tokio::time::Instant::now();
        let run = tokio::spawn({
            let a = a.clone();
            async move { executor.run(&a, &report).await }
        });

        let mut at = Vec::new();
        while let Some(message) = rx.recv().await {
            at.push((start.elapsed(), message.body.unwrap()));
        }
        assert!(run.await.unwrap());
        let timeline: Vec<(u64, &str)> = at
            .iter()
            .map(|(t, body)| {
                let kind = match body {
                    Body::StepStarted(_) => "started",
                    Body::StepFinished(f) => {
                        assert_eq!((f.exit_code, f.attempt), (0, 1));
                        // The worker's own clock: each step's 2.5 s share.
                        assert_eq!(f.duration_ms, Some(2500));
                        "finished"
                    }
                    Body::AssignmentFinished(f) => {
                        assert!(f.succeeded);
                        "done"
                    }
                    other => panic!("unexpected {other:?}"),
                };
                (t.as_millis() as u64, kind)
            })
            .collect();
        assert_eq!(
            timeline,
            [
                (0, "started"),
                (2500, "finished"),
                (2500, "started"),
                (5000, "finished"),
                (5000, "done")
            ]
        );
    }

    #[test]
    fn simulate_step_duration() {
        let mut a = assignment("sh", vec![step("s1", "x"); 4]);
        a.expected_duration_ms = 60_000;
        let sim = |time_scale, a: &Assignment| SimulateExecutor { time_scale }.step_duration(a);
        assert_eq!(sim(1.0, &a), Duration::from_secs(15));
        assert_eq!(sim(0.01, &a), Duration::from_millis(150));
        assert_eq!(sim(0.0, &a), Duration::ZERO);
        a.steps.clear();
        assert_eq!(sim(1.0, &a), Duration::ZERO);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_millis(200), "200ms");
        assert_eq!(format_millis(1500), "1500ms");
        assert_eq!(format_millis(30_000), "30s");
        assert_eq!(format_millis(300_000), "5m");
        assert_eq!(format_millis(7_200_000), "2h");
        assert_eq!(format_millis(0), "0ms");
    }
}
