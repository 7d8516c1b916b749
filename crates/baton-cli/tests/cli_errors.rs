//! End to end through the `baton` binary: bad input exits non-zero with one `error:` line
//! naming the file and line, prints nothing on stdout, and never panics.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh directory per test (process id + test name), removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("baton-cli-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Writes a fixture; `r#"` + newline is stripped so the first TOML line is line 1.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text.strip_prefix('\n').unwrap_or(text)).expect("write fixture");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn baton(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .output()
        .expect("run baton")
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Asserts a refusal: exit code, nothing on stdout, and stderr that starts with `starts`,
/// contains `says`, and is one line (no backtrace, no panic).
#[track_caller]
fn assert_refused(out: &Output, code: i32, starts: &str, says: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {stderr}");
    assert!(stdout.is_empty(), "stdout should be empty, got: {stdout}");
    assert!(
        stderr.starts_with(starts),
        "stderr should start with {starts:?}, got: {stderr}"
    );
    assert!(
        stderr.contains(says),
        "stderr should contain {says:?}, got: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
}

/// Like [`assert_refused`] for our own errors: exit 1 and a single `error:` line.
#[track_caller]
fn assert_input_error(out: &Output, starts: &str, says: &str) {
    assert_refused(out, 1, starts, says);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn malformed_toml() {
    let dir = TempDir::new("malformed_toml");
    let fleet = dir.write(
        "fleet.toml",
        r#"
[fleet]
name = "lab
"#,
    );
    let out = baton(&["plan", path_arg(&fleet)]);
    assert_input_error(
        &out,
        &format!("error: {}:2: `fleet.name`", fleet.display()),
        "invalid basic string",
    );
}

#[test]
fn unknown_field() {
    let dir = TempDir::new("unknown_field");
    let fleet = dir.write(
        "fleet.toml",
        r#"
[fleet]
name = "lab"
max_paralel = 4
"#,
    );
    let out = baton(&["plan", path_arg(&fleet)]);
    assert_input_error(
        &out,
        &format!("error: {}:3: `fleet.max_paralel` = 4: ", fleet.display()),
        "unknown field `max_paralel`",
    );
}

#[test]
fn unknown_role_in_simulate() {
    let dir = TempDir::new("unknown_role_in_simulate");
    let fleet = dir.write(
        "fleet.toml",
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "webserver"
"#,
    );
    let out = baton(&["simulate", path_arg(&fleet)]);
    assert_input_error(
        &out,
        &format!(
            "error: {}:10: server \"fe01.lab.test\": `pool.server.role` = \"webserver\": ",
            fleet.display()
        ),
        "unknown role",
    );
}

#[test]
fn r6_backend_longer_than_outage_budget() {
    let dir = TempDir::new("r6_backend_longer_than_outage_budget");
    let fleet = dir.write(
        "fleet.toml",
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
sql_server = "sql01.lab.test"
outage_budget = "10m"

  [[pool.server]]
  fqdn = "be01.lab.test"
  role = "backend"
  expected_duration = "12m"
"#,
    );
    let out = baton(&["plan", path_arg(&fleet)]);
    assert_input_error(
        &out,
        &format!("error: {}:13: server \"be01.lab.test\"", fleet.display()),
        "outage of 12m does not fit inside the pool's outage_budget of 10m",
    );
}

#[test]
fn runbook_error_names_the_runbook() {
    let dir = TempDir::new("runbook_error_names_the_runbook");
    let runbook = dir.write(
        "runbook.toml",
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"
run = "install --sql {{ pool.sqlserver }}"
"#,
    );
    let fleet = repo_file("examples/contoso.toml");
    let out = baton(&["plan", path_arg(&fleet), "--runbook", path_arg(&runbook)]);
    assert_input_error(
        &out,
        &format!(
            "error: {}:8: step \"install\": `step.run`",
            runbook.display()
        ),
        "unknown variable `pool.sqlserver`",
    );
}

#[test]
fn missing_fleet_file() {
    let dir = TempDir::new("missing_fleet_file");
    let missing = dir.0.join("nope.toml");
    let out = baton(&["plan", path_arg(&missing)]);
    assert_input_error(
        &out,
        &format!("error: cannot read {}", missing.display()),
        "No such file",
    );
}

#[test]
fn jitter_out_of_range() {
    let fleet = repo_file("examples/contoso.toml");
    let out = baton(&["simulate", path_arg(&fleet), "--jitter", "2"]);
    // clap's usage errors exit with 2.
    assert_refused(
        &out,
        2,
        "error: invalid value '2' for '--jitter",
        "\"2\" is not a fraction between 0 and 1",
    );
}

#[test]
fn zero_batch_size() {
    let fleet = repo_file("examples/contoso.toml");
    let out = baton(&["plan", path_arg(&fleet), "--strategy", "batches:0"]);
    assert_refused(
        &out,
        2,
        "error: invalid value 'batches:0' for '--strategy",
        "must be a whole number of at least 1",
    );
}

#[test]
fn param_without_runbook() {
    let fleet = repo_file("examples/contoso.toml");
    let out = baton(&[
        "plan",
        path_arg(&fleet),
        "--param",
        "package_path=C:\\u.exe",
    ]);
    assert_input_error(&out, "error: --param needs --runbook", "parameters fill");
}

#[test]
fn plan_example_as_json() {
    let fleet = repo_file("examples/contoso.toml");
    let runbook = repo_file("runbooks/sfb-server-update.toml");
    let out = baton(&[
        "plan",
        path_arg(&fleet),
        "--runbook",
        path_arg(&runbook),
        "--format",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "plan failed: {stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    // The contract names exactly these keys, at every level.
    let keys = |value: &serde_json::Value| {
        let mut keys: Vec<String> = value
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(&json),
        ["fleet", "lower_bound_s", "makespan_s", "servers"]
    );
    for server in json["servers"].as_array().expect("servers") {
        assert_eq!(
            keys(server),
            [
                "end_s",
                "fqdn",
                "outcome",
                "pool",
                "role",
                "start_s",
                "steps",
                "waited_for"
            ]
        );
        for step in server["steps"].as_array().expect("steps") {
            assert_eq!(keys(step), ["command", "id"]);
        }
        assert_eq!(server["outcome"], "succeeded");
    }
    assert_eq!(json["fleet"], "contoso");
    assert_eq!(
        json["servers"].as_array().map(Vec::len),
        Some(29),
        "every server of the example"
    );
}

#[test]
fn same_seed_same_simulation() {
    let fleet = repo_file("examples/contoso.toml");
    let runbook = repo_file("runbooks/sfb-server-update.toml");
    let args = [
        "simulate",
        path_arg(&fleet),
        "--runbook",
        path_arg(&runbook),
        "--seed",
        "42",
        "--jitter",
        "0.3",
        "--failure-rate",
        "0.1",
        "--format",
        "json",
    ];
    let first = baton(&args);
    let second = baton(&args);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(first.stdout, second.stdout);
    let other_seed = baton(&[&args[..5], &["43"], &args[6..]].concat());
    assert_ne!(first.stdout, other_seed.stdout, "the seed drives the draws");
}

#[test]
fn a_full_disk_is_an_error_not_a_panic() {
    let fleet = repo_file("examples/contoso.toml");
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // not Linux: nothing to test
    };
    let runbook = repo_file("runbooks/sfb-server-update.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "plan",
            path_arg(&fleet),
            "--runbook",
            path_arg(&runbook),
            "--format",
            "json",
        ])
        .stdout(full)
        .output()
        .expect("baton runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    let fleet = repo_file("examples/contoso.toml");
    let runbook = repo_file("runbooks/sfb-server-update.toml");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "plan",
            path_arg(&fleet),
            "--runbook",
            path_arg(&runbook),
            "--format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("baton runs");
    drop(child.stdout.take()); // close the pipe before baton writes
    let out = child.wait_with_output().expect("baton exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
