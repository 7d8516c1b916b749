//! TLS end to end: a controller serving gRPC over mutual TLS, real workers and the real CLI
//! with certificates generated here (none is committed), a whole rollout over it, and every
//! client the controller must turn away: no certificate, a certificate from another CA, a
//! worker speaking for a server its certificate does not name, a worker's certificate used
//! for `baton`, and plain HTTP. Settings that cannot work are usage errors naming the flag.

#![cfg(unix)]

mod support;

use std::path::Path;
use std::process::Command;

use support::pki::{Pair, Pki};
use support::{
    Backend, Cluster, ClusterOptions, TIMEOUT, bins, run_bounded, stderr, stdout, wait_until,
};

const FLEET: &str = r#"
[fleet]
name = "e2e-tls"

[[pool]]
fqdn = "pool1.tls.e2e.test"
edition = "standard"

  [[pool.server]]
  fqdn = "se1.tls.e2e.test"
  role = "standard"

[[pool]]
fqdn = "pool2.tls.e2e.test"
edition = "standard"

  [[pool.server]]
  fqdn = "se2.tls.e2e.test"
  role = "standard"
"#;

const RUNBOOK: &str = r#"
[runbook]
name = "e2e-tls"
shell = "sh"
expected_duration = "1s"

[[step]]
id = "patch"
run = "echo patching {{ server.fqdn }}"
timeout = "30s"
"#;

const SERVERS: [&str; 2] = ["se1.tls.e2e.test", "se2.tls.e2e.test"];
const OPERATOR: &str = "ops.tls.e2e.test";
const VIEWER: &str = "watch.tls.e2e.test";

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `baton-worker` flags for a certificate.
fn worker_tls(pki: &Pki, pair: &Pair) -> Vec<String> {
    vec![
        "--executor".into(),
        "shell".into(),
        "--tls-ca".into(),
        path(&pki.ca_file()),
        "--tls-cert".into(),
        path(&pair.cert),
        "--tls-key".into(),
        path(&pair.key),
    ]
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_rollout_over_mutual_tls_and_every_stranger_turned_away() {
    let pki = Pki::new();
    let controller = pki.issue("controller", &["localhost"], false);
    let operator = pki.issue("operator", &[OPERATOR], false);
    let ca = path(&pki.ca_file());
    let options = ClusterOptions {
        controller_env: support::owned(&[
            ("BATON_TLS_CERT", &path(&controller.cert)),
            ("BATON_TLS_KEY", &path(&controller.key)),
            ("BATON_TLS_CLIENT_CA", &ca),
            (
                "BATON_TLS_OPERATORS",
                &format!("{OPERATOR},other-ops.tls.e2e.test"),
            ),
            ("BATON_TLS_VIEWERS", VIEWER),
        ]),
        cli_env: support::owned(&[
            ("BATON_TLS_CA", &ca),
            ("BATON_TLS_CERT", &path(&operator.cert)),
            ("BATON_TLS_KEY", &path(&operator.key)),
        ]),
        scheme: Some("https"),
    };
    let mut cluster =
        Cluster::start_with("tls", Backend::Sqlite, options).expect("SQLite needs no server");
    assert!(
        cluster
            .controller_stderr()
            .contains("TLS, client certificates required"),
        "{}",
        cluster.controller_stderr()
    );

    // Each worker with its own certificate.
    for fqdn in SERVERS {
        let pair = pki.issue(fqdn, &[fqdn], false);
        cluster.start_worker(fqdn, &as_strs(&worker_tls(&pki, &pair)), &[]);
    }
    cluster.wait_connected(SERVERS);

    // An intruder: a valid certificate of the CA, but for another name than the server it
    // claims to be: its session is refused.
    let intruder = pki.issue("intruder", &["intruder.tls.e2e.test"], false);
    let impostor = cluster.start_worker(
        "se3.tls.e2e.test",
        &as_strs(&worker_tls(&pki, &intruder)),
        &[],
    );
    // A worker whose certificate another CA signed: the handshake fails.
    let stranger = pki.issue("stranger", &["se4.tls.e2e.test"], true);
    let outsider = cluster.start_worker(
        "se4.tls.e2e.test",
        &as_strs(&worker_tls(&pki, &stranger)),
        &[],
    );
    wait_until("the impostor to be refused", TIMEOUT, || {
        cluster
            .worker_stderr(impostor)
            .contains("not valid for se3.tls.e2e.test")
            .then_some(())
    });
    // Refused and retrying: its second attempt has begun.
    wait_until("the outsider to try again", TIMEOUT, || {
        let log = cluster.worker_stderr(outsider);
        let failed = log.contains("refused the stream") || log.contains("cannot reach");
        (failed && log.contains("attempt=2")).then_some(())
    });
    let registered = cluster.servers();
    for stranger in ["se3.tls.e2e.test", "se4.tls.e2e.test"] {
        assert!(
            !registered.contains_key(stranger),
            "{stranger} must not have registered: {registered:?}"
        );
    }
    cluster.kill_worker(impostor);
    cluster.kill_worker(outsider);

    // A rollout over TLS, from start to end.
    let fleet_file = cluster.write("fleet.toml", FLEET);
    let runbook_file = cluster.write("runbook.toml", RUNBOOK);
    let id = cluster.apply(&fleet_file, &runbook_file, &[]);
    let watched = cluster.watch(&id);
    assert!(watched.contains("finished"), "{watched}");
    let status = cluster.status(&id);
    for fqdn in SERVERS {
        let state = status["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .find(|s| s["fqdn"] == fqdn)
            .map(|s| s["state"].clone());
        assert_eq!(state, Some("succeeded".into()), "{status:#}");
    }

    // `baton` turned away: a worker's certificate, no certificate, plain HTTP.
    let baton = |env: &[(&str, &str)], url: &str| {
        let mut command = Command::new(&bins().baton);
        command
            .args(["--controller", url, "servers"])
            .env_remove("BATON_TLS_CA")
            .env_remove("BATON_TLS_CERT")
            .env_remove("BATON_TLS_KEY")
            .env_remove("BATON_CONTROLLER");
        for (key, value) in env {
            command.env(key, value);
        }
        run_bounded(&mut command, TIMEOUT, "baton servers")
    };
    let worker_pair = pki.issue("se1-again", &["se1.tls.e2e.test"], false);
    let as_worker = baton(
        &[
            ("BATON_TLS_CA", &ca),
            ("BATON_TLS_CERT", &path(&worker_pair.cert)),
            ("BATON_TLS_KEY", &path(&worker_pair.key)),
        ],
        &cluster.url,
    );
    assert!(!as_worker.status.success());
    assert!(
        stderr(&as_worker).contains("not an operator's"),
        "{}",
        stderr(&as_worker)
    );
    // A viewer reads, and cannot change anything.
    let viewer = pki.issue("viewer", &[VIEWER], false);
    let viewer_env = [
        ("BATON_TLS_CA", ca.clone()),
        ("BATON_TLS_CERT", path(&viewer.cert)),
        ("BATON_TLS_KEY", path(&viewer.key)),
    ];
    let as_viewer = |args: &[&str]| {
        let mut command = Command::new(&bins().baton);
        command.args(["--controller", &cluster.url]).args(args);
        for (key, value) in &viewer_env {
            command.env(key, value);
        }
        run_bounded(&mut command, TIMEOUT, "baton as a viewer")
    };
    let read = as_viewer(&["status", &id]);
    assert!(read.status.success(), "{}", stderr(&read));
    // Step output too.
    let logs = as_viewer(&["logs", SERVERS[0], "--rollout", &id]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    assert_eq!(stdout(&logs), format!("patch: patching {}\n", SERVERS[0]));
    let change = as_viewer(&["pause", &id]);
    assert!(!change.status.success());
    assert!(
        stderr(&change).contains("viewer's certificate"),
        "{}",
        stderr(&change)
    );
    let anonymous = baton(&[("BATON_TLS_CA", &ca)], &cluster.url);
    assert!(!anonymous.status.success(), "{}", stderr(&anonymous));
    let plain = baton(&[], &cluster.url.replace("https://", "http://"));
    assert!(!plain.status.success(), "{}", stderr(&plain));
}

/// Settings that cannot work stop the binaries at once (exit status 2), naming the flag.
#[test]
fn tls_settings_that_cannot_work_are_usage_errors() {
    let pki = Pki::new();
    let controller = pki.issue("controller", &["localhost"], false);
    let not_pem = pki.dir.path().join("not-a-certificate.pem");
    std::fs::write(&not_pem, "hello\n").expect("write");
    let run = |program: &Path, args: &[&str]| {
        let mut command = Command::new(program);
        command
            .args(args)
            .env_remove("BATON_TLS_CA")
            .env_remove("BATON_TLS_CERT")
            .env_remove("BATON_TLS_KEY")
            .env_remove("BATON_TLS_CLIENT_CA")
            .env_remove("BATON_TLS_OPERATORS")
            .env_remove("BATON_CONTROLLER")
            .env_remove("BATON_FQDN");
        let output = run_bounded(&mut command, TIMEOUT, "a binary with bad TLS settings");
        (output.status.code(), stderr(&output))
    };
    let bins = bins();
    let (cert, key) = (path(&controller.cert), path(&controller.key));
    let ca = path(&pki.ca_file());
    let mut cases: Vec<(&Path, Vec<&str>, &str)> = vec![
        (
            &bins.controller,
            vec![
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--tls-client-ca",
                &ca,
            ],
            "--tls-client-ca needs at least one --tls-operator",
        ),
        (
            &bins.controller,
            vec!["--tls-cert", not_pem.to_str().unwrap(), "--tls-key", &key],
            "--tls-cert",
        ),
        (
            &bins.controller,
            vec!["--tls-cert", &cert, "--tls-key", &cert],
            "--tls-key",
        ),
    ];
    let worker_cases = [
        ("https://127.0.0.1:1", vec![], "needs --tls-ca"),
        (
            "http://127.0.0.1:1",
            vec!["--tls-ca", &ca],
            "must be https://",
        ),
        (
            "https://127.0.0.1:1",
            vec!["--tls-ca", "/nonexistent/ca.pem"],
            "cannot read --tls-ca /nonexistent/ca.pem",
        ),
    ];
    for (url, extra, says) in worker_cases {
        let mut args = vec!["--controller", url, "--fqdn", "se1.tls.e2e.test"];
        args.extend(extra);
        cases.push((&bins.worker, args, says));
    }
    for (program, args, says) in cases {
        let (code, text) = run(program, &args);
        assert_eq!(code, Some(2), "{} {args:?}: {text}", program.display());
        assert!(
            text.contains(says),
            "{} {args:?} should say {says:?}: {text}",
            program.display()
        );
    }
    // The CLI is not a service: a bad setting is an error (status 1) naming the flag.
    let (code, text) = run(
        &bins.baton,
        &[
            "--controller",
            "https://127.0.0.1:1",
            "--tls-ca",
            not_pem.to_str().unwrap(),
            "servers",
        ],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("--tls-ca"), "{text}");
}
