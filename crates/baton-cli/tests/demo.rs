//! `baton demo` through the binary, in its quickest configuration (two single-server pools,
//! `--seconds 0.2`), with `TMPDIR` pointed at a fresh directory: the database it creates there
//! (`baton-demo-PID.db`, `-wal`, `-shm`) is gone when it ends, unless `--keep` is given.
//!
//! Deterministic: the demo's own end (or, for Ctrl-C, its "rollout … applied" line) is the only
//! sync point. A watchdog kills a demo still running after `BOUND`; it never fires otherwise.

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `--seconds` of the quickest demo: the tiny fleet's rollout played in about 0.2 s.
const QUICK: &str = "0.2";

/// Safety bound only: a demo that takes this long has hung.
const BOUND: Duration = Duration::from_secs(120);

/// Two Standard Edition pools of one server each, one at a time.
const FLEET: &str = r#"
[fleet]
name = "tiny"
max_parallel = 1

[[pool]]
fqdn = "se01.tiny.example"
edition = "standard"

  [[pool.server]]
  fqdn = "se01.tiny.example"
  role = "standard"

[[pool]]
fqdn = "se02.tiny.example"
edition = "standard"

  [[pool.server]]
  fqdn = "se02.tiny.example"
  role = "standard"
"#;

/// Two steps; the demo's workers simulate them (nothing runs).
const RUNBOOK: &str = r#"
[runbook]
name = "noop"
shell = "sh"
expected_duration = "1m"

[[step]]
id = "hello"
run = "echo updating {{ server.fqdn }}"
timeout = "1m"

[[step]]
id = "done"
run = "true"
timeout = "30s"
"#;

/// A fresh directory per test, removed when the test ends: the fixtures, and `tmp/`, the
/// demo's TMPDIR (empty at the start).
struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn new(test: &str) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("baton-cli-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("tmp")).expect("create temp dir");
        fs::write(dir.join("fleet.toml"), FLEET).expect("write the fleet");
        fs::write(dir.join("runbook.toml"), RUNBOOK).expect("write the runbook");
        Sandbox { dir }
    }

    fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// `baton demo` on the tiny fleet, played in about `seconds`, with `extra` arguments.
    fn demo(&self, seconds: &str, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
        command
            .arg("demo")
            .arg("--fleet")
            .arg(self.dir.join("fleet.toml"))
            .arg("--runbook")
            .arg(self.dir.join("runbook.toml"))
            .args(["--seconds", seconds])
            .args(extra)
            // std::env::temp_dir(): TMPDIR on Unix, TMP (then TEMP) on Windows.
            .env("TMPDIR", self.tmp())
            .env("TMP", self.tmp())
            .env("TEMP", self.tmp())
            // No OTLP export from the test, whatever the environment says.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// The names in the demo's TMPDIR that start with `baton-demo-`.
    fn leftovers(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.tmp())
            .expect("read the demo's TMPDIR")
            .map(|entry| entry.expect("a directory entry").file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .filter(|name| name.starts_with("baton-demo-"))
            .collect();
        names.sort();
        names
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Kills `pid` if `done` has not been signalled within [`BOUND`] (Unix: there is no portable
/// way to kill a child another thread waits on; elsewhere the test is unbounded).
fn watchdog(pid: u32) -> std::sync::mpsc::Sender<()> {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(BOUND) {
            eprintln!("the demo (pid {pid}) still runs after {BOUND:?}: killing it");
            if cfg!(unix) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    });
    done
}

/// Runs the demo to its end, bounded by [`BOUND`]; returns its output and process id.
fn run(command: &mut Command) -> (Output, u32) {
    let child = command.spawn().expect("run baton demo");
    let pid = child.id();
    let done = watchdog(pid);
    let output = child.wait_with_output().expect("wait for baton demo");
    let _ = done.send(());
    (output, pid)
}

#[track_caller]
fn assert_succeeded(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the demo failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("held at every instant of the event log"),
        "no summary:\n{stdout}"
    );
}

fn kept_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.contains("database kept at"))
        .collect()
}

#[test]
fn demo_removes_its_database_when_it_ends() {
    let sandbox = Sandbox::new("demo_removes_its_database_when_it_ends");
    let (output, pid) = run(&mut sandbox.demo(QUICK, &[]));
    assert_succeeded(&output);
    // It did use this TMPDIR: the store line names the file it has since removed.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let db = sandbox.tmp().join(format!("baton-demo-{pid}.db"));
    assert!(
        stdout.contains(&db.display().to_string()),
        "the demo's store is not {}:\n{stdout}",
        db.display()
    );
    assert_eq!(sandbox.leftovers(), Vec::<String>::new(), "left behind");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(kept_lines(&stderr).is_empty(), "{stderr}");
}

#[test]
fn demo_with_keep_leaves_its_database_and_says_where() {
    let sandbox = Sandbox::new("demo_with_keep_leaves_its_database_and_says_where");
    let (output, pid) = run(&mut sandbox.demo(QUICK, &["--keep"]));
    assert_succeeded(&output);
    let db = sandbox.tmp().join(format!("baton-demo-{pid}.db"));
    assert!(
        sandbox
            .leftovers()
            .contains(&format!("baton-demo-{pid}.db")),
        "{} is gone: {:?}",
        db.display(),
        sandbox.leftovers()
    );
    // A whole SQLite database: the store was closed (its WAL checkpointed) before exit.
    let mut header = [0u8; 16];
    fs::File::open(&db)
        .and_then(|mut file| file.read_exact(&mut header))
        .expect("read the kept database");
    assert_eq!(&header, b"SQLite format 3\0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let kept = kept_lines(&stderr);
    assert_eq!(
        kept.len(),
        1,
        "one line says where the database is: {stderr}"
    );
    assert!(
        kept[0].contains(&format!("database kept at {} ", db.display())),
        "{}",
        kept[0]
    );
}

/// Ctrl-C in the middle of a rollout: the demo stops short (exit 1, `interrupted`) and still
/// removes its database.
#[cfg(unix)]
#[test]
fn demo_interrupted_by_ctrl_c_removes_its_database() {
    use std::io::{BufRead, BufReader};

    let sandbox = Sandbox::new("demo_interrupted_by_ctrl_c_removes_its_database");
    // Ten minutes of rollout: it is mid-way when interrupted, however slow the machine.
    let mut command = sandbox.demo("600", &[]);
    let mut child = command.spawn().expect("run baton demo");
    let pid = child.id();
    let done = watchdog(pid);

    // The sync point: the rollout is applied (the Ctrl-C handler is in place by then).
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let read = stdout.read_line(&mut line).expect("read the demo's stdout");
        assert!(
            read > 0,
            "the demo ended before applying its rollout:\n{seen}"
        );
        seen.push_str(&line);
        if line.starts_with("rollout ") && line.contains(" applied") {
            break;
        }
    }
    let db = sandbox.tmp().join(format!("baton-demo-{pid}.db"));
    assert!(db.exists(), "{} not created:\n{seen}", db.display());
    let interrupt = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(interrupt.success(), "kill -INT {pid}: {interrupt}");
    // Drain stdout (the live view may still write) so the demo never blocks on a full pipe.
    std::io::copy(&mut stdout, &mut std::io::sink()).expect("drain the demo's stdout");
    let output = child.wait_with_output().expect("wait for baton demo");
    let _ = done.send(());

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: interrupted"), "{stderr}");
    assert_eq!(sandbox.leftovers(), Vec::<String>::new(), "left behind");
}

/// `--db FILE` names the user's own file: never removed, and said where it is.
#[test]
fn demo_keeps_a_database_named_with_db() {
    let sandbox = Sandbox::new("demo_keeps_a_database_named_with_db");
    let db = sandbox.dir.join("mine.db");
    let mut command = sandbox.demo(QUICK, &[]);
    command.arg("--db").arg(&db);
    let (output, _) = run(&mut command);
    assert_succeeded(&output);
    assert!(db.exists(), "{} is gone", db.display());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let kept = kept_lines(&stderr);
    assert_eq!(kept.len(), 1, "{stderr}");
    assert!(
        kept[0].contains(&format!("database kept at {} ", db.display())),
        "{}",
        kept[0]
    );
    assert_eq!(sandbox.leftovers(), Vec::<String>::new());
}
