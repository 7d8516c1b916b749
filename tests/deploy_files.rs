//! The service files of `deploy/` against the real binaries, so that they cannot drift apart:
//!
//! - `deploy/systemd/*.service`: the keys a service needs are there (and, for the worker, the
//!   sandboxing that would break its steps is not); every `--flag` of `ExecStart=` is one the
//!   binary lists in `--help`, and the binary accepts the exact arguments (they are passed
//!   with `--help` last: clap checks every flag and value before it, then only prints help);
//!   the state directory is where the binary keeps its state; exit status 2
//!   (`RestartPreventExitStatus=`) is what a usage error gives, and only that.
//! - `deploy/systemd/*.env.example`: every `BATON_*` variable is one the binary reads (`[env:
//!   …]` in its `--help`) and every one it reads is documented; `OTEL_*` ones are in the list
//!   of those Baton honours; the worker's required settings are there.
//! - Each unit's command line, with its `Environment=` and its example file's settings (paths
//!   and ports moved into a temp dir), starts the real binary: the worker connects to the
//!   controller, and each stops on SIGTERM (`KillSignal=`) with status 0 well within
//!   `TimeoutStopSec=`. The unedited worker example makes the worker exit 2 at once.
//! - `deploy/windows/*.ps1`: every `'--flag'` they pass is one the worker accepts, the install
//!   script passes every flag the worker requires and accepts the same `--log-format` values,
//!   and the worker accepts the install script's argument list. (PowerShell itself is not run.)
//! - Where systemd is installed, `systemd-analyze verify` has nothing to say about either unit.
//!
//! No network beyond loopback; about a second once the binaries are built. Linux only: the
//! units are systemd's, and the process checks read /proc.
//! Run: `cargo test --test deploy_files`.

#![cfg(target_os = "linux")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::{TempDir, bins, run_bounded, stderr, stdout, wait_until};

const HELP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a binary may take to start (listen, or exit on a usage error) in these tests.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `OTEL_*` variables Baton honours, as docs/telemetry.md ("OTLP and logs") lists them:
/// read by `baton-telemetry` or by the OpenTelemetry SDK it configures.
const KNOWN_OTEL: [&str; 17] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
];

/// Other variables an example file may set: the log filter of both binaries.
const OTHER_KNOWN: [&str; 1] = ["RUST_LOG"];

/// Keys that would confine the worker, and so every step it runs (which must be able to patch
/// the machine): the worker's unit must not have them (see its comments).
const CONFINING: [&str; 16] = [
    "DynamicUser",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "NoNewPrivileges",
    "CapabilityBoundingSet",
    "SystemCallFilter",
    "RestrictAddressFamilies",
    "RestrictNamespaces",
    "ProtectKernelModules",
    "ProtectKernelTunables",
    "ProtectControlGroups",
    "MemoryDenyWriteExecute",
];

fn repo_file(path: &str) -> (PathBuf, String) {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()));
    (full, text)
}

// ---------------------------------------------------------------------------------------------
// What a binary accepts, from its `--help`

#[derive(Debug, Default)]
struct Opt {
    env: Option<String>,
    default: Option<String>,
    /// `[possible values: a, b]`, or the `- a: …` list of the long help.
    values: Vec<String>,
}

#[derive(Debug)]
struct Help {
    binary: PathBuf,
    /// Long flag (`--listen`) → what its help says.
    opts: BTreeMap<String, Opt>,
    /// The flags of the `Usage:` line outside `[...]`: the required ones.
    required: Vec<String>,
}

/// A command for one of the binaries with none of the variables it reads inherited from the
/// test's environment (a developer's BATON_CONTROLLER must not change what is checked).
fn clean_command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("BATON_") || name.starts_with("OTEL_") || name == "RUST_LOG" {
            command.env_remove(name.as_ref());
        }
    }
    command.env("NO_COLOR", "1");
    command
}

impl Help {
    fn of(binary: &Path) -> Help {
        let output = run_bounded(
            clean_command(binary).arg("--help"),
            HELP_TIMEOUT,
            &format!("{} --help", binary.display()),
        );
        assert!(
            output.status.success(),
            "{} --help failed",
            binary.display()
        );
        let help = Help::parse(binary, &stdout(&output));
        assert!(
            help.opts.contains_key("--help") && help.opts.len() > 2,
            "could not read the options of {} --help:\n{}",
            binary.display(),
            stdout(&output)
        );
        help
    }

    fn parse(binary: &Path, text: &str) -> Help {
        let mut opts = BTreeMap::new();
        let mut required = Vec::new();
        let mut current: Option<String> = None;
        for line in text.lines() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            if let Some(usage) = line.strip_prefix("Usage: ") {
                let mut depth = 0usize;
                for word in usage.split_whitespace() {
                    if depth == 0
                        && let Some(flag) = long_flag(word)
                    {
                        required.push(flag);
                    }
                    depth += word.matches('[').count();
                    depth = depth.saturating_sub(word.matches(']').count());
                }
                continue;
            }
            // An option starts on a line of its own, indented less than its description:
            // `  -h, --help` or `      --listen <LISTEN>`.
            if (1..8).contains(&indent) && trimmed.starts_with('-') && trimmed.contains("--") {
                current = trimmed
                    .split([' ', ','])
                    .find_map(long_flag)
                    .inspect(|flag| {
                        opts.insert(flag.clone(), Opt::default());
                    });
                continue;
            }
            let Some(opt) = current.as_ref().and_then(|flag| opts.get_mut(flag)) else {
                continue;
            };
            if let Some(rest) = trimmed.split_once("[env: ").map(|(_, rest)| rest) {
                let name = rest.split(['=', ']']).next().unwrap_or_default();
                opt.env = Some(name.to_string());
            }
            if let Some(rest) = trimmed.split_once("[default: ").map(|(_, rest)| rest) {
                opt.default = rest.strip_suffix(']').map(str::to_string);
            }
            if let Some(rest) = trimmed
                .split_once("[possible values: ")
                .map(|(_, rest)| rest)
            {
                let list = rest.strip_suffix(']').unwrap_or(rest);
                opt.values
                    .extend(list.split(", ").map(|v| v.trim().to_string()));
            } else if let Some(rest) = trimmed.strip_prefix("- ")
                && let Some((value, _)) = rest.split_once(':')
                && !value.contains(' ')
            {
                opt.values.push(value.to_string());
            }
        }
        Help {
            binary: binary.to_path_buf(),
            opts,
            required,
        }
    }

    fn envs(&self) -> BTreeSet<&str> {
        self.opts
            .values()
            .filter_map(|o| o.env.as_deref())
            .collect()
    }

    fn name(&self) -> String {
        self.binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Every `--flag` of `args` (`--flag=value` too) must be one of the binary's.
    fn assert_flags_known<'a>(&self, args: impl IntoIterator<Item = &'a str>, source: &str) {
        for arg in args {
            if let Some(flag) = long_flag(arg) {
                assert!(
                    self.opts.contains_key(&flag),
                    "{source} passes {flag}, which {} does not have (its flags: {:?})",
                    self.name(),
                    self.opts.keys().collect::<Vec<_>>()
                );
            }
        }
    }

    /// The binary accepts these exact arguments: with `--help` last, clap parses and checks
    /// every flag and value before it, then prints help and exits 0 (the check that a
    /// required flag is present comes after, so it is skipped).
    fn assert_accepts(&self, args: &[String], source: &str) {
        let output = run_bounded(
            clean_command(&self.binary).args(args).arg("--help"),
            HELP_TIMEOUT,
            &format!("{} {} --help", self.name(), args.join(" ")),
        );
        assert!(
            output.status.success(),
            "{} refuses the arguments of {source} ({}):\n{}",
            self.name(),
            args.join(" "),
            stderr(&output)
        );
    }
}

/// `--flag` out of `--flag`, `--flag=value`, `--flag,` or `'--flag'`; `None` for anything else.
fn long_flag(word: &str) -> Option<String> {
    let rest = word.trim_start_matches(['\'', '"']).strip_prefix("--")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!name.is_empty() && name.starts_with(|c: char| c.is_ascii_alphabetic()))
        .then(|| format!("--{name}"))
}

#[test]
fn the_help_parser_reads_clap_help() {
    let text = "\
Usage: w [OPTIONS] --controller <C> --fqdn <F>

Options:
      --controller <C>
          The controller

          [env: BATON_CONTROLLER=http://x:1]

      --state-dir <DIR>
          Folder, e.g. `--state-dir /x`
          [env: BATON_STATE_DIR=]
          [default: /var/lib/w]

      --executor <E>
          [default: shell]
          [possible values: shell, simulate]

      --log-format <F>
          Possible values:
          - text: Human-readable lines
          - json: One JSON object per line

  -h, --help
          Print help (see a summary with '-h')
";
    let help = Help::parse(Path::new("w"), text);
    assert_eq!(
        help.opts.keys().collect::<Vec<_>>(),
        [
            "--controller",
            "--executor",
            "--help",
            "--log-format",
            "--state-dir"
        ]
    );
    assert_eq!(help.required, ["--controller", "--fqdn"]);
    assert_eq!(
        help.opts["--controller"].env.as_deref(),
        Some("BATON_CONTROLLER")
    );
    assert_eq!(
        help.opts["--state-dir"].default.as_deref(),
        Some("/var/lib/w")
    );
    assert_eq!(help.opts["--executor"].values, ["shell", "simulate"]);
    assert_eq!(help.opts["--log-format"].values, ["text", "json"]);
    assert_eq!(
        long_flag("'--state-dir\\s+(x)'").as_deref(),
        Some("--state-dir")
    );
    assert_eq!(long_flag("--"), None);
    assert_eq!(long_flag("-h"), None);
}

// ---------------------------------------------------------------------------------------------
// systemd units, read simply: sections, `Key=value` (repeatable), `#`/`;` comments, `\`
// continuations

struct Unit {
    path: PathBuf,
    entries: Vec<(String, String, String)>,
}

impl Unit {
    fn load(path: &str) -> Unit {
        let (path, text) = repo_file(path);
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending = String::new();
        for (number, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with(['#', ';'])) {
                continue;
            }
            if let Some(start) = line.strip_suffix('\\') {
                pending.push_str(start);
                pending.push(' ');
                continue;
            }
            let line = std::mem::take(&mut pending) + line;
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
                continue;
            }
            let (key, value) = line.split_once('=').unwrap_or_else(|| {
                panic!("{}:{}: not Key=value: {raw}", path.display(), number + 1)
            });
            assert!(
                !section.is_empty(),
                "{}:{}: outside any section",
                path.display(),
                number + 1
            );
            entries.push((section.clone(), key.trim().into(), value.trim().into()));
        }
        Unit { path, entries }
    }

    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The value of a key that must be set exactly once.
    fn one(&self, section: &str, key: &str) -> &str {
        match self.all(section, key)[..] {
            [value] => value,
            ref values => panic!(
                "{}: [{section}] {key}= must be set once, found {values:?}",
                self.path.display()
            ),
        }
    }

    fn has(&self, section: &str, key: &str) -> bool {
        !self.all(section, key).is_empty()
    }

    fn expect(&self, section: &str, key: &str, wanted: &[&str]) {
        let value = self.one(section, key);
        assert!(
            wanted.contains(&value),
            "{}: [{section}] {key}={value}, expected one of {wanted:?}",
            self.path.display()
        );
    }

    /// `ExecStart=`: the program and its arguments (no `$VAR` or `%` specifiers: they would
    /// need expanding here first).
    fn exec_start(&self) -> (String, Vec<String>) {
        let line = self.one("Service", "ExecStart");
        assert!(
            !line.contains(['$', '%']),
            "{}: ExecStart={line} uses variables or specifiers, which this test does not expand",
            self.path.display()
        );
        let mut words = split_words(line).into_iter();
        let program = words.next().expect("ExecStart names a program");
        let program = program
            .trim_start_matches(['@', '-', ':', '+', '!'])
            .to_string();
        (program, words.collect())
    }

    /// All `Environment=` assignments, in order.
    fn environment(&self) -> Vec<(String, String)> {
        self.all("Service", "Environment")
            .into_iter()
            .flat_map(split_words)
            .map(|word| {
                let (name, value) = word.split_once('=').unwrap_or_else(|| {
                    panic!(
                        "{}: Environment= {word} is not NAME=value",
                        self.path.display()
                    )
                });
                (name.to_string(), value.to_string())
            })
            .collect()
    }

    /// `TimeoutStopSec=` as a duration (`30`, `30s`, `1min`, `1min 30s`).
    fn timeout_stop(&self) -> Duration {
        let value = self.one("Service", "TimeoutStopSec");
        let mut total = 0u64;
        for part in value.split_whitespace() {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            let number: u64 = digits
                .parse()
                .unwrap_or_else(|_| panic!("TimeoutStopSec={value}: cannot read {part}"));
            total += number
                * match &part[digits.len()..] {
                    "" | "s" | "sec" => 1,
                    "m" | "min" => 60,
                    other => panic!("TimeoutStopSec={value}: unit {other:?} not handled here"),
                };
        }
        Duration::from_secs(total)
    }
}

/// Words as systemd splits a command line or an `Environment=` value: on whitespace, with
/// double or single quotes grouping.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(quote.is_none(), "unbalanced quote in {line}");
    if in_word {
        words.push(word);
    }
    words
}

/// Checks shared by both units.
fn check_common(unit: &Unit, help: &Help, binary_name: &str, env_file: &str, state_dir: &str) {
    let path = unit.path.display();
    assert!(!unit.one("Unit", "Description").is_empty());
    for key in ["After", "Wants"] {
        assert!(
            unit.all("Unit", key)
                .iter()
                .any(|v| v.split_whitespace().any(|t| t == "network-online.target")),
            "{path}: [Unit] {key}= must name network-online.target (the binary connects over the network)"
        );
    }
    assert!(
        !unit
            .all("Unit", "After")
            .iter()
            .any(|v| v.contains("postgresql")),
        "{path}: PostgreSQL ordering is a commented hint only (the database may be elsewhere)"
    );
    unit.expect("Install", "WantedBy", &["multi-user.target"]);

    let (program, args) = unit.exec_start();
    assert!(
        program.starts_with('/') && program.ends_with(&format!("/{binary_name}")),
        "{path}: ExecStart= runs {program}, not an absolute path to {binary_name}"
    );
    help.assert_flags_known(
        args.iter().map(String::as_str),
        &format!("{path} ExecStart="),
    );
    help.assert_accepts(&args, &format!("{path} ExecStart="));
    for (name, _) in unit.environment() {
        if name.starts_with("BATON_") {
            assert!(
                help.envs().contains(name.as_str()),
                "{path}: Environment={name}=… is not a variable {binary_name} reads ({:?})",
                help.envs()
            );
        }
    }
    // A flag on the command line beats its variable: ExecStart must not pin a setting that
    // the environment file is there to change.
    for arg in &args {
        if let Some(flag) = long_flag(arg)
            && let Some(env) = &help.opts[&flag].env
        {
            panic!(
                "{path}: ExecStart= passes {flag}, which would override {env} from {env_file}: set {env} with Environment= instead"
            );
        }
    }

    unit.expect("Service", "EnvironmentFile", &[&format!("-{env_file}")]);
    unit.expect("Service", "StateDirectory", &[state_dir]);
    unit.expect("Service", "KillSignal", &["SIGTERM"]);
    let timeout = unit.timeout_stop();
    assert!(
        (Duration::from_secs(10)..=Duration::from_secs(120)).contains(&timeout),
        "{path}: TimeoutStopSec={timeout:?}: the binary needs a few seconds to flush its telemetry (bounded by 3 s); more than 2 minutes only delays a shutdown"
    );
    assert!(
        unit.has("Service", "Type"),
        "{path}: state Type= (exec: the binary does not notify systemd)"
    );
    unit.expect("Service", "Type", &["exec", "simple"]);
    unit.expect("Service", "RestartPreventExitStatus", &["2"]);
}

/// `RestartPreventExitStatus=2` is right only if 2 means a usage error and nothing else:
/// a bad flag exits 2, a runtime failure does not.
fn check_usage_error_is_exit_2(binary: &Path, runtime_failure: &[&str], dir: &Path) {
    let output = run_bounded(
        clean_command(binary).arg("--no-such-flag"),
        START_TIMEOUT,
        "a bad flag",
    );
    assert_eq!(output.status.code(), Some(2), "a usage error must exit 2");
    let output = run_bounded(
        clean_command(binary).args(runtime_failure).current_dir(dir),
        START_TIMEOUT,
        "a runtime failure",
    );
    let code = output.status.code();
    assert!(
        code.is_some_and(|c| c != 0 && c != 2),
        "{} {} should fail at run time with a status other than 2 (got {code:?}):\n{}",
        binary.display(),
        runtime_failure.join(" "),
        stderr(&output)
    );
}

/// `systemd-analyze verify` on the unit, its `ExecStart=` program replaced by the built binary
/// (verify wants it to exist): catches what this file's simple reading does not, such as a
/// misspelt key or a value systemd cannot parse (it only warns about those, so any line it
/// prints about the unit fails the test). Skipped, saying so, where systemd is not installed.
fn systemd_verify(unit: &Unit, binary: &Path) {
    let probe = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|status| status.success()) {
        eprintln!(
            "deploy_files: systemd-analyze not found: {} not checked by systemd itself",
            unit.path.display()
        );
        return;
    }
    let (program, _) = unit.exec_start();
    let text = fs::read_to_string(&unit.path).expect("read the unit");
    let dir = TempDir::new("deploy-verify");
    let copy = dir
        .path()
        .join(unit.path.file_name().expect("a unit file name"));
    fs::write(
        &copy,
        text.replace(
            &format!("ExecStart={program}"),
            &format!("ExecStart={}", binary.display()),
        ),
    )
    .expect("write the unit's copy");
    let output = run_bounded(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy),
        HELP_TIMEOUT,
        "systemd-analyze verify",
    );
    let name = copy.file_name().expect("a file name").to_string_lossy();
    let complaints: Vec<String> = stdout(&output)
        .lines()
        .chain(stderr(&output).lines())
        .filter(|line| line.contains(name.as_ref()))
        .map(str::to_string)
        .collect();
    assert!(
        output.status.success() && complaints.is_empty(),
        "systemd-analyze verify {} ({}):\n{}\n{}",
        unit.path.display(),
        output.status,
        complaints.join("\n"),
        stderr(&output)
    );
}

#[test]
fn the_controller_unit_matches_the_binary() {
    let help = Help::of(&bins().controller);
    let unit = Unit::load("deploy/systemd/baton-controller.service");
    let path = unit.path.display().to_string();
    check_common(
        &unit,
        &help,
        "baton-controller",
        "/etc/baton/controller.env",
        "baton",
    );
    systemd_verify(&unit, &bins().controller);
    unit.expect("Service", "Restart", &["on-failure", "always"]);

    // A dedicated unprivileged user, and hardening that leaves it its state directory.
    let dynamic = unit.all("Service", "DynamicUser") == ["yes"];
    let user = unit.all("Service", "User");
    assert!(
        dynamic || (user.len() == 1 && !["root", "0", ""].contains(&user[0])),
        "{path}: run the controller as a dedicated user (DynamicUser=yes or User=baton)"
    );
    unit.expect("Service", "NoNewPrivileges", &["yes", "true"]);
    unit.expect("Service", "ProtectSystem", &["strict"]);
    unit.expect("Service", "ProtectHome", &["yes", "read-only", "tmpfs"]);
    unit.expect("Service", "PrivateTmp", &["yes", "true"]);

    // The default store is SQLite inside the state directory (the only writable place).
    let env: BTreeMap<String, String> = unit.environment().into_iter().collect();
    let db = env
        .get("BATON_DB")
        .unwrap_or_else(|| panic!("{path}: no Environment=BATON_DB=sqlite:///var/lib/baton/…"));
    let file = db
        .strip_prefix("sqlite://")
        .unwrap_or_else(|| panic!("{path}: BATON_DB={db} is not sqlite://FILE"));
    assert!(
        file.starts_with("/var/lib/baton/"),
        "{path}: BATON_DB={db} is outside StateDirectory=baton (/var/lib/baton), which ProtectSystem=strict leaves read-only"
    );

    let dir = TempDir::new("deploy-controller-exit");
    check_usage_error_is_exit_2(
        &bins().controller,
        &[
            "--db",
            "sqlite:///nonexistent-baton-dir/baton.db",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
}

#[test]
fn the_worker_unit_matches_the_binary() {
    let help = Help::of(&bins().worker);
    let unit = Unit::load("deploy/systemd/baton-worker.service");
    let path = unit.path.display().to_string();
    check_common(
        &unit,
        &help,
        "baton-worker",
        "/etc/baton/worker.env",
        "baton-worker",
    );
    systemd_verify(&unit, &bins().worker);

    // It must come back after any exit, quickly, and never give up.
    unit.expect("Service", "Restart", &["always"]);
    let restart_sec = unit.one("Service", "RestartSec");
    let seconds: u64 = restart_sec
        .trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("{path}: RestartSec={restart_sec}: write it as N or Ns"));
    assert!(
        (1..=10).contains(&seconds),
        "{path}: RestartSec={restart_sec}: a worker should be back within seconds"
    );
    unit.expect("Unit", "StartLimitIntervalSec", &["0", "infinity"]);

    // root, unconfined: its steps patch the machine.
    for user in unit.all("Service", "User") {
        assert!(
            ["root", "0"].contains(&user),
            "{path}: User={user}: the steps need root"
        );
    }
    for key in CONFINING {
        assert!(
            !unit.has("Service", key),
            "{path}: {key}= would confine every step the worker runs"
        );
    }

    // On stop the worker must get SIGTERM first and the step's processes must not outlive it.
    let kill_mode = unit.all("Service", "KillMode");
    assert!(
        kill_mode
            .iter()
            .all(|m| ["mixed", "control-group"].contains(m)),
        "{path}: KillMode={kill_mode:?} would leave a step's processes running after the worker stopped"
    );

    // The journal is where StateDirectory= keeps it: the binary's default, and what the unit
    // says explicitly.
    let state_dir = format!("/var/lib/{}", unit.one("Service", "StateDirectory"));
    let default = help.opts["--state-dir"].default.as_deref();
    assert_eq!(
        default,
        Some(state_dir.as_str()),
        "{path}: baton-worker's default --state-dir is {default:?}, StateDirectory= gives {state_dir}"
    );
    let env: BTreeMap<String, String> = unit.environment().into_iter().collect();
    if let Some(dir) = env.get("BATON_STATE_DIR") {
        assert_eq!(
            dir, &state_dir,
            "{path}: BATON_STATE_DIR and StateDirectory= differ"
        );
    }

    let dir = TempDir::new("deploy-worker-exit");
    let blocked = dir.path().join("not-a-directory");
    fs::write(&blocked, "").expect("write a file");
    check_usage_error_is_exit_2(
        &bins().worker,
        &[
            "--controller",
            "http://127.0.0.1:9",
            "--fqdn",
            "exit.deploy.test",
            "--state-dir",
            blocked.join("state").to_str().expect("UTF-8 path"),
        ],
        dir.path(),
    );
}

// ---------------------------------------------------------------------------------------------
// Example environment files

/// `NAME` of every `NAME=value` and `#NAME=value` line, with whether it is active.
fn env_lines(path: &str) -> Vec<(String, String, bool)> {
    let (_, text) = repo_file(path);
    text.lines()
        .filter_map(|line| {
            let active = !line.starts_with('#');
            let assignment = line.trim_start_matches('#').trim_start();
            let (name, value) = assignment.split_once('=')?;
            let valid = !name.is_empty()
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            valid.then(|| (name.to_string(), value.to_string(), active))
        })
        .collect()
}

fn check_env_example(path: &str, help: &Help) {
    let lines = env_lines(path);
    let named: BTreeSet<&str> = lines.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(!named.is_empty(), "{path}: no VAR=value lines found");
    for name in &named {
        if name.starts_with("BATON_") {
            assert!(
                help.envs().contains(name),
                "{path}: {name} is not a variable {} reads (it reads {:?})",
                help.name(),
                help.envs()
            );
        } else if name.starts_with("OTEL_") {
            assert!(
                KNOWN_OTEL.contains(name),
                "{path}: {name} is not among the OTEL_* variables Baton honours ({KNOWN_OTEL:?})"
            );
        } else {
            assert!(
                OTHER_KNOWN.contains(name),
                "{path}: {name}: neither BATON_*, OTEL_* nor {OTHER_KNOWN:?}"
            );
        }
    }
    for env in help.envs() {
        assert!(
            named.contains(env),
            "{path}: {} reads {env}, which the example does not document",
            help.name()
        );
    }
    // Each required flag can be set in the file, and the file has a line for it to fill.
    for flag in &help.required {
        let env = help.opts[flag].env.as_deref().unwrap_or_else(|| {
            panic!(
                "{} requires {flag}, which has no environment variable: the unit cannot take it from {path}",
                help.name()
            )
        });
        assert!(
            lines.iter().any(|(n, _, active)| n == env && *active),
            "{path}: {env} (required {flag}) must be an uncommented line to fill in"
        );
    }
}

#[test]
fn the_example_env_files_name_only_what_the_binaries_read() {
    check_env_example(
        "deploy/systemd/controller.env.example",
        &Help::of(&bins().controller),
    );
    check_env_example(
        "deploy/systemd/worker.env.example",
        &Help::of(&bins().worker),
    );
}

// ---------------------------------------------------------------------------------------------
// The units' command lines and environments start the real binaries, which stop on SIGTERM

/// A child with its stderr in a file; SIGKILLed if still running when dropped.
struct Service {
    name: String,
    child: Child,
    stderr: PathBuf,
}

impl Service {
    fn start(name: &str, mut command: Command, dir: &Path) -> Service {
        let stderr = dir.join(format!("{name}.stderr"));
        let file = File::create(&stderr).expect("create a stderr file");
        let child = command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Service {
            name: name.to_string(),
            child,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Sends SIGTERM (what systemd sends) and waits; returns the status and how long it took.
    fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        assert!(
            self.exited().is_none(),
            "{} exited before it was stopped:\n{}",
            self.name,
            self.stderr()
        );
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        let started = Instant::now();
        // SAFETY: kill(2) on our own child, not yet reaped: the pid cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let status = wait_until(&format!("{} to stop on SIGTERM", self.name), limit, || {
            self.exited()
        });
        (status, started.elapsed())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("----- {} stderr -----\n{}", self.name, self.stderr());
        }
    }
}

/// The environment systemd would give the unit's process: its `Environment=`, then the
/// example file's active lines (EnvironmentFile= wins), then `overrides`; `/var/lib` paths
/// moved under `root`.
fn unit_environment(
    unit: &Unit,
    example: &str,
    root: &Path,
    overrides: &[(&str, String)],
) -> BTreeMap<String, String> {
    let relocate = |value: &str| value.replace("/var/lib/", &format!("{}/", root.display()));
    let mut env = BTreeMap::new();
    for (name, value) in unit.environment() {
        env.insert(name, relocate(&value));
    }
    for (name, value, active) in env_lines(example) {
        if active {
            env.insert(name, relocate(&value));
        }
    }
    for (name, value) in overrides {
        env.insert((*name).to_string(), value.clone());
    }
    env
}

fn unit_command(unit: &Unit, binary: &Path, env: &BTreeMap<String, String>) -> Command {
    let (_, args) = unit.exec_start();
    let mut command = clean_command(binary);
    command.args(args).envs(env).env("RUST_LOG", "info");
    command
}

/// A controller and a connected worker, each started from its unit and example file.
struct Installed {
    dir: TempDir,
    controller_unit: Unit,
    worker_unit: Unit,
    controller: Service,
    worker: Service,
    url: String,
    fqdn: &'static str,
    journal: PathBuf,
}

impl Installed {
    fn start(test: &str) -> Installed {
        let dir = TempDir::new(test);
        let lib = dir.path().join("var-lib");
        let controller_unit = Unit::load("deploy/systemd/baton-controller.service");
        let worker_unit = Unit::load("deploy/systemd/baton-worker.service");
        for unit in [&controller_unit, &worker_unit] {
            fs::create_dir_all(lib.join(unit.one("Service", "StateDirectory")))
                .expect("create the state directory");
        }

        // The controller, as its unit and example file say, on free loopback ports.
        let env = unit_environment(
            &controller_unit,
            "deploy/systemd/controller.env.example",
            &lib,
            &[
                ("BATON_LISTEN", "127.0.0.1:0".into()),
                ("BATON_HTTP", "127.0.0.1:0".into()),
            ],
        );
        let db_file = env["BATON_DB"].trim_start_matches("sqlite://").to_string();
        let mut controller = Service::start(
            "baton-controller",
            unit_command(&controller_unit, &bins().controller, &env),
            dir.path(),
        );
        let addr = wait_until("the controller to listen", START_TIMEOUT, || {
            if let Some(status) = controller.exited() {
                panic!("the controller exited ({status}):\n{}", controller.stderr());
            }
            let log = controller.stderr();
            let line = log
                .lines()
                .find(|l| l.contains("baton-controller listening"))?;
            let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
            Some(addr.to_string())
        });
        assert!(
            Path::new(&db_file).is_file(),
            "the store is not in the state directory ({db_file})"
        );
        let url = format!("http://{addr}");

        // The worker example as shipped refuses to start (its two required lines are empty):
        // the unit then stays failed (RestartPreventExitStatus=2) rather than retrying.
        let env = unit_environment(&worker_unit, "deploy/systemd/worker.env.example", &lib, &[]);
        let output = run_bounded(
            &mut unit_command(&worker_unit, &bins().worker, &env),
            START_TIMEOUT,
            "the worker with the unedited example",
        );
        assert_eq!(
            output.status.code(),
            Some(2),
            "the unedited worker.env.example should be a usage error:\n{}",
            stderr(&output)
        );

        // Filled in, it connects to the controller.
        let fqdn = "be01.deploy.test";
        let env = unit_environment(
            &worker_unit,
            "deploy/systemd/worker.env.example",
            &lib,
            &[
                ("BATON_CONTROLLER", url.clone()),
                ("BATON_FQDN", fqdn.into()),
            ],
        );
        let mut worker = Service::start(
            "baton-worker",
            unit_command(&worker_unit, &bins().worker, &env),
            dir.path(),
        );
        wait_until("the worker to connect", START_TIMEOUT, || {
            if let Some(status) = worker.exited() {
                panic!("the worker exited ({status}):\n{}", worker.stderr());
            }
            let text = stdout(&run_bounded(
                clean_command(&bins().baton).args([
                    "--controller",
                    &url,
                    "servers",
                    "--format",
                    "json",
                ]),
                START_TIMEOUT,
                "baton servers",
            ));
            let servers: serde_json::Value = serde_json::from_str(&text).ok()?;
            servers["servers"]
                .as_array()?
                .iter()
                .any(|s| s["fqdn"] == fqdn && s["connected"] == true)
                .then_some(())
        });
        // Its journal is in the unit's state directory (the file itself appears with the
        // first assignment).
        let journal = Path::new(&env["BATON_STATE_DIR"]).join("journal.jsonl");
        assert!(
            worker
                .stderr()
                .contains(&format!("journal opened journal={}", journal.display())),
            "the worker did not open its journal at {}",
            journal.display()
        );
        Installed {
            dir,
            controller_unit,
            worker_unit,
            controller,
            worker,
            url,
            fqdn,
            journal,
        }
    }

    /// SIGTERM, as systemd sends it: the service must exit 0 well within its TimeoutStopSec.
    fn stop(service: &mut Service, unit: &Unit) {
        let limit = unit.timeout_stop();
        let (status, took) = service.terminate(limit);
        assert!(
            status.success(),
            "{} exited with {status} on SIGTERM:\n{}",
            service.name,
            service.stderr()
        );
        assert!(
            took < limit / 2,
            "{} took {took:?} to stop, too close to TimeoutStopSec={limit:?}",
            service.name
        );
    }
}

/// Whether a process is still running (a zombie is not).
fn running(pid: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

#[test]
fn the_units_start_the_binaries_and_sigterm_stops_them() {
    let mut installed = Installed::start("deploy-units");
    let dir = installed.dir.path().to_path_buf();

    // A step that runs until it is stopped, and says which process it is.
    let pid_file = dir.join("step.pid");
    let fleet = dir.join("fleet.toml");
    let runbook = dir.join("runbook.toml");
    fs::write(
        &fleet,
        format!(
            "[fleet]\nname = \"deploy\"\n\n[[pool]]\nfqdn = \"pool.deploy.test\"\nedition = \"enterprise\"\n\n  [[pool.server]]\n  fqdn = \"{}\"\n  role = \"frontend\"\n",
            installed.fqdn
        ),
    )
    .expect("write the fleet");
    fs::write(
        &runbook,
        format!(
            "[runbook]\nname = \"deploy-long-step\"\nshell = \"sh\"\nexpected_duration = \"1m\"\n\n[[step]]\nid = \"long\"\nrun = \"echo $$ > '{}'; exec sleep 120\"\ntimeout = \"5m\"\n",
            pid_file.display()
        ),
    )
    .expect("write the runbook");
    let output = run_bounded(
        clean_command(&bins().baton).args([
            "--controller",
            &installed.url,
            "apply",
            fleet.to_str().expect("UTF-8 path"),
            "--runbook",
            runbook.to_str().expect("UTF-8 path"),
        ]),
        START_TIMEOUT,
        "baton apply",
    );
    assert!(output.status.success(), "baton apply: {}", stderr(&output));
    let step_pid = wait_until("the step to start", START_TIMEOUT, || {
        let pid = fs::read_to_string(&pid_file).ok()?;
        let pid = pid.trim().to_string();
        (!pid.is_empty()).then_some(pid)
    });
    assert!(
        running(&step_pid),
        "the step's process {step_pid} is not running"
    );

    // Stopping the worker mid-step (KillMode=mixed: SIGTERM to the worker alone) stops the
    // step's processes, and leaves the step journaled as started and not finished: what the
    // controller resumes or holds for an operator when the worker is back.
    Installed::stop(&mut installed.worker, &installed.worker_unit);
    wait_until("the step's process to be gone", START_TIMEOUT, || {
        (!running(&step_pid)).then_some(())
    });
    let journal = fs::read_to_string(&installed.journal).expect("read the worker's journal");
    assert!(
        journal.contains("\"step_started\"")
            && !journal.contains("\"step_finished\"")
            && !journal.contains("\"finished\""),
        "the stopped step should be journaled as started only:\n{journal}"
    );

    // Then the controller.
    Installed::stop(&mut installed.controller, &installed.controller_unit);
}

/// What `systemctl stop baton-controller` does with the fleet connected: SIGTERM while worker
/// streams are open. The controller ends those streams itself (a graceful stop would otherwise
/// wait for them for ever, until systemd's SIGKILL at TimeoutStopSec) and exits 0.
#[test]
fn the_controller_stops_on_sigterm_with_workers_connected() {
    let mut installed = Installed::start("deploy-controller-stop");
    Installed::stop(&mut installed.controller, &installed.controller_unit);
    Installed::stop(&mut installed.worker, &installed.worker_unit);
}

// ---------------------------------------------------------------------------------------------
// Windows install scripts

/// The code of a PowerShell script without its comments (`#…` lines and `<# … #>` blocks),
/// so that prose about flags is not taken for arguments.
fn powershell_code(text: &str) -> String {
    let mut code = String::new();
    let mut in_block = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if in_block {
            in_block = !trimmed.contains("#>");
            continue;
        }
        if trimmed.starts_with("<#") {
            in_block = !trimmed.contains("#>");
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// Every quoted `'--flag'` / `"--flag"` of a script's code.
fn quoted_flags(code: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for quote in ['\'', '"'] {
        for (at, _) in code.match_indices(&format!("{quote}--")) {
            if let Some(flag) = long_flag(&code[at..]) {
                flags.push(flag);
            }
        }
    }
    flags
}

/// `$Name = 'value'` of a script.
fn script_string(code: &str, name: &str, script: &str) -> String {
    let prefix = format!("${name} = '");
    code.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&prefix)?
                .strip_suffix('\'')
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("{script}: no {prefix}…' line"))
}

#[test]
fn the_windows_scripts_pass_only_what_the_worker_accepts() {
    let help = Help::of(&bins().worker);
    let install_path = "deploy/windows/install-worker.ps1";
    let uninstall_path = "deploy/windows/uninstall-worker.ps1";
    let (_, install) = repo_file(install_path);
    let (_, uninstall) = repo_file(uninstall_path);
    let install_code = powershell_code(&install);
    let uninstall_code = powershell_code(&uninstall);

    for (script, text, code) in [
        (install_path, &install, &install_code),
        (uninstall_path, &uninstall, &uninstall_code),
    ] {
        let flags = quoted_flags(code);
        help.assert_flags_known(flags.iter().map(String::as_str), script);
        for line in [
            "Set-StrictMode -Version Latest",
            "$ErrorActionPreference = 'Stop'",
        ] {
            assert!(code.contains(line), "{script}: no `{line}`");
        }
        assert!(
            text.lines()
                .any(|l| l.trim() == "#Requires -RunAsAdministrator"),
            "{script}: no `#Requires -RunAsAdministrator`"
        );
    }
    assert_eq!(
        script_string(&install_code, "TaskName", install_path),
        script_string(&uninstall_code, "TaskName", uninstall_path),
        "the two scripts name different tasks"
    );
    assert_eq!(
        script_string(&install_code, "TaskPath", install_path),
        script_string(&uninstall_code, "TaskPath", uninstall_path),
        "the two scripts use different task folders"
    );

    // The install script's argument list, `$workerArgs = @( '--flag', $Value, … )`.
    let block = install_code
        .split_once("$workerArgs = @(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(block, _)| block)
        .unwrap_or_else(|| panic!("{install_path}: no `$workerArgs = @(` … `)` list"));
    let words: Vec<&str> = block
        .split([',', '\n'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    let passed: Vec<String> = words.iter().filter_map(|w| long_flag(w)).collect();
    for flag in help.required.iter().chain([&"--state-dir".to_string()]) {
        assert!(
            passed.contains(flag),
            "{install_path}: the worker needs {flag}, which $workerArgs does not pass"
        );
    }
    // The same list with example values must be accepted by the worker (the script runs that
    // very check before it registers anything).
    let sample = |variable: &str| -> String {
        match variable {
            "$ControllerUrl" => "http://baton.contoso.com:7411".into(),
            "$Fqdn" => "be01.emea.contoso.com".into(),
            "$StateDir" => r"C:\ProgramData\Baton\worker".into(),
            "$LogFormat" => "json".into(),
            "$LogFile" => r"C:\ProgramData\Baton\worker\worker.log".into(),
            other => panic!("{install_path}: $workerArgs uses {other}: add a sample value here"),
        }
    };
    let args: Vec<String> = words
        .iter()
        .map(
            |w| match w.strip_prefix('\'').and_then(|w| w.strip_suffix('\'')) {
                Some(literal) => literal.to_string(),
                None => sample(w),
            },
        )
        .collect();
    help.assert_accepts(&args, &format!("{install_path} $workerArgs"));

    // -LogFormat offers exactly the worker's --log-format values.
    let set = install_code
        .split_once("[ValidateSet(")
        .and_then(|(_, rest)| rest.split_once(")]"))
        .map(|(set, _)| set)
        .unwrap_or_else(|| panic!("{install_path}: no [ValidateSet(…)] for -LogFormat"));
    let offered: BTreeSet<&str> = set
        .split(',')
        .map(|v| v.trim().trim_matches('\''))
        .collect();
    let accepted: BTreeSet<&str> = help.opts["--log-format"]
        .values
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        offered, accepted,
        "{install_path}: -LogFormat offers {offered:?}, the worker takes {accepted:?}"
    );

    // The task it registers starts at boot as SYSTEM and is never ended for running long.
    for needle in [
        "New-ScheduledTaskTrigger -AtStartup",
        "-UserId 'SYSTEM'",
        "-RunLevel Highest",
        "-ExecutionTimeLimit ([TimeSpan]::Zero)",
        "-MultipleInstances IgnoreNew",
        "-RestartCount",
        "Join-Path $env:ProgramData 'Baton\\worker'",
    ] {
        assert!(
            install_code.contains(needle),
            "{install_path}: no `{needle}`"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Dashboards and alert rules

/// The `baton_*` metric names a text uses, histogram series (`_bucket`, `_sum`, `_count`)
/// under their histogram's name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("baton_") {
        // A name starts here only if no identifier character comes right before it.
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        // `baton_*` in prose names the family, not a metric.
        if name == "baton_" {
            continue;
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        names.insert(base.to_string());
    }
    names
}

/// Every metric the Grafana dashboard and the alert rules query is one docs/telemetry.md
/// documents (its table lists what the controller exports), so a renamed metric cannot leave
/// a panel or an alert silently empty.
#[test]
fn the_dashboard_and_the_rules_use_only_documented_metrics() {
    let (_, docs) = repo_file("docs/telemetry.md");
    let documented: BTreeSet<String> = docs
        .lines()
        .filter(|line| line.starts_with("| `baton_"))
        .filter_map(|line| line.split('`').nth(1))
        .map(str::to_string)
        .collect();
    assert!(documented.len() >= 15, "the metrics table: {documented:?}");
    for file in [
        "deploy/grafana/baton.json",
        "deploy/prometheus/baton-rules.yml",
    ] {
        let (_, text) = repo_file(file);
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file} queries no baton_* metric");
        let unknown: Vec<&String> = used
            .iter()
            .filter(|name| !documented.contains(*name))
            .collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics docs/telemetry.md does not document: {unknown:?}"
        );
    }
}
