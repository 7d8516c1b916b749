//! The end-to-end harness: builds the real binaries once, starts a `baton-controller` on a fresh
//! database (SQLite in a temp dir, or a schema of its own on the PostgreSQL server named by
//! `BATON_TEST_POSTGRES_URL`), starts `baton-worker` processes, and runs the `baton` CLI against
//! them. Every wait is bounded; every child is killed when its [`Cluster`] is dropped, and a
//! failing test prints the controller's and the workers' stderr.

#![allow(dead_code)] // each test binary uses its own subset

pub mod pki;
pub mod proxy;

/// Runs each named test body, a `fn(Backend)`, once per store: `<test>::sqlite` and
/// `<test>::postgres` (which says it was skipped without `BATON_TEST_POSTGRES_URL`). For test
/// files that declare `#[macro_use] mod support;`.
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use super::support::Backend;

            #[test]
            fn sqlite() {
                super::$test(Backend::Sqlite);
            }

            #[test]
            fn postgres() {
                super::$test(Backend::Postgres);
            }
        }
    )*};
}

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest any single wait of a test may take (a rollout, a command, a condition).
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// How often a condition is looked at again while waiting for it.
const POLL: Duration = Duration::from_millis(50);
/// How long building the binaries may take (a cold build of the whole workspace included).
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Overrides where the binaries are taken from (and skips building them), e.g. for a test
/// binary run outside the target directory it was built in.
pub const BIN_DIR_VAR: &str = "BATON_E2E_BIN_DIR";
pub const POSTGRES_URL_VAR: &str = "BATON_TEST_POSTGRES_URL";

// ---------------------------------------------------------------------------------------------
// The binaries

pub struct Bins {
    pub controller: PathBuf,
    pub worker: PathBuf,
    pub baton: PathBuf,
}

impl Bins {
    fn in_dir(dir: &Path) -> Result<Bins, String> {
        let bin = |name: &str| {
            let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!("{} was not built", path.display()))
            }
        };
        Ok(Bins {
            controller: bin("baton-controller")?,
            worker: bin("baton-worker")?,
            baton: bin("baton")?,
        })
    }
}

/// `baton-controller`, `baton-worker` and `baton`, built once per test process (cargo does not
/// build other packages' binaries for this package's tests) with the profile and into the
/// target directory this test binary itself was built with.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Result<Bins, String>> = OnceLock::new();
    match BINS.get_or_init(build_bins) {
        Ok(bins) => bins,
        Err(err) => panic!("{err}"),
    }
}

/// What cargo (and nextest) set for the crates they build and the tests they run, as opposed to
/// the variables that configure cargo itself.
const CARGO_SETS_FOR_CRATES: [&str; 10] = [
    "CARGO",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "CARGO_MAKEFLAGS",
    "OUT_DIR",
];

fn build_bins() -> Result<Bins, String> {
    if let Some(dir) = std::env::var_os(BIN_DIR_VAR) {
        return Bins::in_dir(Path::new(&dir));
    }
    // This test binary is <target-dir>[/<triple>]/<profile-dir>/deps/<name>-<hash>.
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in <target>/<profile>/deps", exe.display()))?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("no profile directory above {}", exe.display()))?;
    let mut target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("no target directory above {}", exe.display()))?;
    let mut triple = None;
    // Cargo marks the target directory's root with CACHEDIR.TAG; one level further up, the
    // level in between is a `--target` triple.
    if !target_dir.join("CACHEDIR.TAG").is_file()
        && let Some(parent) = target_dir.parent()
        && parent.join("CACHEDIR.TAG").is_file()
    {
        triple = target_dir.file_name().map(OsString::from);
        target_dir = parent;
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut build = Command::new(cargo);
    // Without what cargo set for this test process: build scripts that watch these (ring's
    // watches CARGO_MANIFEST_DIR, …) would otherwise rebuild half the workspace every time.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if CARGO_SETS_FOR_CRATES.contains(&name.as_ref())
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
        {
            build.env_remove(name.as_ref());
        }
    }
    build
        .args(["build", "--bins"])
        .args([
            "-p",
            "baton-controller",
            "-p",
            "baton-worker",
            "-p",
            "baton-cli",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        custom => {
            build.args(["--profile", custom]);
        }
    }
    if let Some(triple) = &triple {
        build.arg("--target").arg(triple);
    }
    let started = Instant::now();
    let output = run_bounded(&mut build, BUILD_TIMEOUT, "cargo build of the binaries");
    if !output.status.success() {
        return Err(format!(
            "cargo build of baton-controller, baton-worker and baton failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    eprintln!(
        "baton-e2e: binaries from {} (cargo build took {:.1} s)",
        profile_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Bins::in_dir(profile_dir)
}

// ---------------------------------------------------------------------------------------------
// Running things with a deadline

/// Runs `command` to its end, its output captured, killing it (and failing the test) if it
/// takes longer than `timeout`.
pub fn run_bounded(command: &mut Command, timeout: Duration, what: &str) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let out = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
                let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
                panic!("{what} did not finish within {timeout:?}\nstdout:\n{out}\nstderr:\n{err}");
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Polls `probe` until it gives a value, failing the test after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(POLL);
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Temp dirs

/// A folder of its own under the system temp dir; removed on drop, kept (and named) when the
/// test failed, for a look.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "baton-e2e-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("baton-e2e: kept {} for a look", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Databases

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server to test against; `None` (after saying so, past the test harness's
/// output capture) when `BATON_TEST_POSTGRES_URL` is not set.
pub fn postgres_base_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_string()),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "baton-e2e: {test} on PostgreSQL skipped: {POSTGRES_URL_VAR} is not set \
                 (e.g. postgres://baton:baton@127.0.0.1:5432/baton_test; `.ci/postgres.sh` \
                 sets one up and prints it)"
            );
            None
        }
    }
}

/// A schema of its own on the test PostgreSQL server: the controller's URL sets `search_path`
/// to it, so its migrations and queries stay inside. Dropped on drop unless the test failed.
pub struct PgSchema {
    base_url: String,
    name: String,
}

impl PgSchema {
    pub fn create(base_url: String, test: &str) -> PgSchema {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let mut name = format!(
            "baton_e2e_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            test.to_ascii_lowercase()
        );
        name.truncate(63);
        let schema = PgSchema { base_url, name };
        schema.execute(&format!("CREATE SCHEMA {}", schema.name));
        schema
    }

    /// The store URL whose tables live in this schema.
    pub fn url(&self) -> String {
        let separator = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base_url, self.name
        )
    }

    fn execute(&self, sql: &str) {
        use sqlx::Connection as _;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async {
            let connect = sqlx::PgConnection::connect(&self.base_url);
            let mut connection = tokio::time::timeout(Duration::from_secs(20), connect)
                .await
                .unwrap_or_else(|_| panic!("connecting to {POSTGRES_URL_VAR} timed out"))
                .unwrap_or_else(|e| panic!("connect to {POSTGRES_URL_VAR}: {e}"));
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = connection.close().await;
        });
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("baton-e2e: kept PostgreSQL schema {} for a look", self.name);
        } else {
            self.execute(&format!("DROP SCHEMA {} CASCADE", self.name));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process whose stdout and stderr go to files; killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    stderr_path: PathBuf,
}

impl Proc {
    fn spawn(name: &str, command: &mut Command, dir: &Path) -> Proc {
        let stderr_path = dir.join(format!("{name}.stderr"));
        let stdout_path = dir.join(format!("{name}.stdout"));
        let file = |path: &Path| {
            File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
        };
        let child = command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file(&stdout_path))
            .stderr(file(&stderr_path))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            stderr_path,
        }
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&mut self, signal: libc::c_int) {
        if self.exited().is_none() {
            let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
            // SAFETY: kill(2) on our own, not yet reaped child: the pid cannot have been reused.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a log, without terminal colour codes.
fn tail(text: &str, lines: usize) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let all: Vec<&str> = plain.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// A controller, its workers, and the CLI

/// One event of `baton events ID --format json`.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: u64,
    pub at: String,
    pub rollout: String,
    pub server: String,
    pub pool: String,
    pub kind: String,
    pub detail: String,
    /// The JSON line's keys, sorted.
    pub keys: Vec<String>,
}

impl Event {
    fn parse(line: &str) -> Event {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("event line {line:?}: {e}"));
        let object = value
            .as_object()
            .unwrap_or_else(|| panic!("event line is not an object: {line}"));
        let text = |key: &str| {
            object
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("event without string {key:?}: {line}"))
                .to_string()
        };
        Event {
            seq: object
                .get("seq")
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("event without numeric seq: {line}")),
            at: text("at"),
            rollout: text("rollout"),
            server: text("server"),
            pool: text("pool"),
            kind: text("kind"),
            detail: text("detail"),
            keys: object.keys().cloned().collect(),
        }
    }
}

/// `baton-controller --listen LISTEN --db DB --http 127.0.0.1:0` with `env` added.
fn controller_command(listen: &str, db_url: &str, dir: &Path, env: &[(String, String)]) -> Command {
    let mut command = Command::new(&bins().controller);
    command
        .args(["--listen", listen, "--db", db_url, "--http", "127.0.0.1:0"])
        .current_dir(dir);
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// How [`Cluster::start_with`] sets the cluster up.
#[derive(Debug, Default, Clone)]
pub struct ClusterOptions {
    /// Extra environment for the controller (`OTEL_*`, `BATON_TLS_*`...).
    pub controller_env: Vec<(String, String)>,
    /// Extra environment for every `baton` run.
    pub cli_env: Vec<(String, String)>,
    /// The controller URL's scheme: `http` (the default) or `https`.
    pub scheme: Option<&'static str>,
}

/// `[(&str, &str)]` as owned pairs.
pub fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub struct Cluster {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub db_url: String,
    controller: Proc,
    /// Extra environment for every controller this cluster starts (restarts included).
    controller_env: Vec<(String, String)>,
    /// Extra environment for every `baton` run (TLS files, say).
    cli_env: Vec<(String, String)>,
    workers: Vec<(String, Proc)>,
    /// Dropped after the processes: a schema is dropped once nothing uses it.
    _schema: Option<PgSchema>,
    dir: TempDir,
}

impl Cluster {
    /// A controller on a fresh database of `backend`, ready to answer. `None` when the
    /// backend is PostgreSQL and no test server is configured (the test is then skipped).
    pub fn start(test: &str, backend: Backend) -> Option<Cluster> {
        Cluster::start_with_env(test, backend, &[])
    }

    /// [`Cluster::start`] with extra environment for the controller (`OTEL_*`, say).
    pub fn start_with_env(
        test: &str,
        backend: Backend,
        controller_env: &[(&str, &str)],
    ) -> Option<Cluster> {
        Cluster::start_with(
            test,
            backend,
            ClusterOptions {
                controller_env: owned(controller_env),
                ..ClusterOptions::default()
            },
        )
    }

    /// [`Cluster::start`] with [`ClusterOptions`].
    pub fn start_with(test: &str, backend: Backend, options: ClusterOptions) -> Option<Cluster> {
        let ClusterOptions {
            controller_env,
            cli_env,
            scheme,
        } = options;
        let scheme = scheme.unwrap_or("http");
        let (schema, db_url, dir) = match backend {
            Backend::Sqlite => {
                let dir = TempDir::new(&format!("{test}-sqlite"));
                let url = format!("sqlite://{}", dir.path().join("baton.db").display());
                (None, url, dir)
            }
            Backend::Postgres => {
                let base = postgres_base_url(test)?;
                let schema = PgSchema::create(base, test);
                let url = schema.url();
                (Some(schema), url, TempDir::new(&format!("{test}-postgres")))
            }
        };
        // The port comes from binding port 0 and letting it go; should another process take
        // it in between, the controller says it cannot listen and we try another.
        for attempt in 1..=5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let listen = format!("127.0.0.1:{port}");
            let mut controller = Proc::spawn(
                &format!("controller-{attempt}"),
                &mut controller_command(&listen, &db_url, dir.path(), &controller_env),
                dir.path(),
            );
            let ready = wait_until("the controller to listen", TIMEOUT, || {
                if let Some(status) = controller.exited() {
                    return Some(Err(status));
                }
                // Logged once it has bound the port (after opening and migrating the store).
                controller
                    .stderr()
                    .contains("baton-controller listening")
                    .then_some(Ok(()))
            });
            match ready {
                Ok(()) => {
                    let cluster = Cluster {
                        url: format!("{scheme}://{listen}"),
                        db_url,
                        controller,
                        controller_env,
                        cli_env,
                        workers: Vec::new(),
                        _schema: schema,
                        dir,
                    };
                    // It answers gRPC, store included.
                    cluster.baton_ok(&["servers"]);
                    return Some(cluster);
                }
                Err(_) if controller.stderr().contains("cannot listen") && attempt < 5 => {
                    eprintln!("baton-e2e: port {port} was taken, trying another");
                }
                Err(status) => panic!(
                    "the controller exited ({status}) before it listened:\n{}",
                    controller.stderr()
                ),
            }
        }
        unreachable!("the loop returns or panics")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The controller's Prometheus endpoint, `http://127.0.0.1:PORT/metrics`, as it logged it
    /// (it binds `--http 127.0.0.1:0`).
    pub fn metrics_url(&self) -> String {
        let stderr = self.controller.stderr();
        let marker = "metrics on ";
        let at = stderr
            .find(marker)
            .unwrap_or_else(|| panic!("the controller did not log its metrics address:\n{stderr}"));
        stderr[at + marker.len()..]
            .split_whitespace()
            .next()
            .expect("an address after the marker")
            .to_string()
    }

    /// The controller's stderr so far.
    pub fn controller_stderr(&self) -> String {
        self.controller.stderr()
    }

    /// Stops the controller with SIGTERM (a clean shutdown: it flushes its telemetry) and
    /// waits for it to exit.
    pub fn stop_controller(&mut self) -> ExitStatus {
        self.controller.signal(libc::SIGTERM);
        let controller = &mut self.controller;
        wait_until("the controller to exit", TIMEOUT, || controller.exited())
    }

    /// Stops a worker with SIGTERM and waits for it to exit.
    pub fn stop_worker(&mut self, index: usize) -> ExitStatus {
        let worker = &mut self.workers[index].1;
        worker.signal(libc::SIGTERM);
        wait_until("the worker to exit", TIMEOUT, || worker.exited())
    }

    /// SIGKILLs the controller (a crash: nothing is flushed or closed) and starts a new one on
    /// the same address and database; returns once it answers.
    pub fn crash_and_restart_controller(&mut self, round: usize) {
        self.controller.kill();
        let listen = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, address)| address)
            .to_string();
        let name = format!("controller-restart-{round}");
        self.controller = Proc::spawn(
            &name,
            &mut controller_command(&listen, &self.db_url, self.dir.path(), &self.controller_env),
            self.dir.path(),
        );
        let controller = &mut self.controller;
        wait_until("the restarted controller to listen", TIMEOUT, || {
            if let Some(status) = controller.exited() {
                panic!(
                    "the restarted controller exited ({status}):\n{}",
                    controller.stderr()
                );
            }
            controller
                .stderr()
                .contains("baton-controller listening")
                .then_some(())
        });
        self.baton_ok(&["servers"]);
    }

    /// Writes a file into the test's folder and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir().join(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Starts a worker for `fqdn` with extra flags and environment; returns its index.
    pub fn start_worker(&mut self, fqdn: &str, flags: &[&str], env: &[(&str, &str)]) -> usize {
        // One journal per server, kept across restarts of its worker.
        let state_dir = self.dir.path().join("state").join(fqdn);
        let url = self.url.clone();
        self.start_worker_at(fqdn, &url, &state_dir, flags, env)
    }

    /// Starts a worker for `fqdn` that reaches the controller at `url` (a proxy, say) and keeps
    /// its journal in `state_dir` (one an earlier install left, say); returns its index.
    pub fn start_worker_at(
        &mut self,
        fqdn: &str,
        url: &str,
        state_dir: &Path,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> usize {
        let index = self.workers.len();
        let mut command = Command::new(&bins().worker);
        command
            .args(["--controller", url, "--fqdn", fqdn])
            .arg("--state-dir")
            .arg(state_dir)
            .args(flags)
            .current_dir(self.dir.path());
        for (key, value) in env {
            command.env(key, value);
        }
        let proc = Proc::spawn(&format!("worker-{index}-{fqdn}"), &mut command, self.dir());
        self.workers.push((fqdn.to_string(), proc));
        index
    }

    pub fn worker_stderr(&self, index: usize) -> String {
        self.workers[index].1.stderr()
    }

    /// SIGKILLs a worker (a crash, or its server going down): it reports nothing more.
    pub fn kill_worker(&mut self, index: usize) {
        self.workers[index].1.kill();
    }

    pub fn worker_exited(&mut self, index: usize) -> Option<ExitStatus> {
        self.workers[index].1.exited()
    }

    /// Runs `baton --controller URL ARGS…` to its end (bounded).
    pub fn baton(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&bins().baton);
        command
            .args(["--controller", &self.url])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("BATON_CONTROLLER");
        for (key, value) in &self.cli_env {
            command.env(key, value);
        }
        run_bounded(&mut command, TIMEOUT, &format!("baton {}", args.join(" ")))
    }

    /// Runs `baton ARGS…`, which must succeed; returns its stdout.
    pub fn baton_ok(&self, args: &[&str]) -> String {
        let output = self.baton(args);
        assert!(
            output.status.success(),
            "baton {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            output.status,
            stdout(&output),
            stderr(&output)
        );
        stdout(&output)
    }

    /// `baton servers --format json`: fqdn -> the worker's JSON object.
    pub fn servers(&self) -> BTreeMap<String, Value> {
        let text = self.baton_ok(&["servers", "--format", "json"]);
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("baton servers --format json: {e}:\n{text}"));
        value["servers"]
            .as_array()
            .unwrap_or_else(|| panic!("no servers array:\n{text}"))
            .iter()
            .map(|w| (w["fqdn"].as_str().expect("fqdn").to_string(), w.clone()))
            .collect()
    }

    /// Waits until a worker is connected for every one of `fqdns`.
    pub fn wait_connected<'a>(&self, fqdns: impl IntoIterator<Item = &'a str>) {
        let fqdns: Vec<&str> = fqdns.into_iter().collect();
        wait_until("every worker to connect", TIMEOUT, || {
            let servers = self.servers();
            fqdns
                .iter()
                .all(|f| servers.get(*f).is_some_and(|w| w["connected"] == true))
                .then_some(())
        });
    }

    /// `baton apply FLEET --runbook RUNBOOK [--param P]…`: must succeed and print only the id.
    pub fn apply(&self, fleet: &Path, runbook: &Path, params: &[&str]) -> String {
        let mut args = vec![
            "apply",
            fleet.to_str().expect("UTF-8 path"),
            "--runbook",
            runbook.to_str().expect("UTF-8 path"),
        ];
        for param in params {
            args.extend(["--param", param]);
        }
        let out = self.baton_ok(&args);
        let id = out.trim_end_matches('\n');
        assert!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
            "apply printed {out:?}, not just a rollout id"
        );
        id.to_string()
    }

    /// `baton status ID --watch` to its end: must exit 0. Returns its stdout.
    pub fn watch(&self, id: &str) -> String {
        self.baton_ok(&["status", id, "--watch"])
    }

    /// `baton status ID --format json`.
    pub fn status(&self, id: &str) -> Value {
        let text = self.baton_ok(&["status", id, "--format", "json"]);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("baton status --format json: {e}:\n{text}"))
    }

    /// `baton events ID --format json`, one event per line.
    pub fn events(&self, id: &str) -> Vec<Event> {
        self.baton_ok(&["events", id, "--format", "json"])
            .lines()
            .map(Event::parse)
            .collect()
    }

    /// `baton logs FQDN --rollout ID`: the server's step output, one line per output line.
    pub fn logs(&self, fqdn: &str, id: &str) -> String {
        self.baton_ok(&["logs", fqdn, "--rollout", id])
    }

    /// Polls the event log until `done` holds for it; returns that log.
    pub fn wait_events(&self, id: &str, what: &str, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        wait_until(what, TIMEOUT, || {
            let events = self.events(id);
            done(&events).then_some(events)
        })
    }

    fn dump_logs(&self) {
        let mut out = String::new();
        let mut section = |name: &str, text: &str| {
            out.push_str(&format!(
                "----- {name} stderr (tail) -----\n{}\n",
                tail(text, 40)
            ));
        };
        section(&self.controller.name, &self.controller.stderr());
        for (_, worker) in &self.workers {
            section(&worker.name, &worker.stderr());
        }
        eprintln!(
            "{out}----- end of logs; files in {} -----",
            self.dir().display()
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Workers get SIGTERM so they stop their running step too; then whatever is left is
        // killed. All bounded: a stuck worker is SIGKILLed after a few seconds.
        for (_, worker) in &mut self.workers {
            worker.signal(libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && self
                .workers
                .iter_mut()
                .any(|(_, worker)| worker.exited().is_none())
        {
            thread::sleep(Duration::from_millis(10));
        }
        for (_, worker) in &mut self.workers {
            worker.kill();
        }
        self.controller.kill();
        if thread::panicking() {
            self.dump_logs();
        }
    }
}
