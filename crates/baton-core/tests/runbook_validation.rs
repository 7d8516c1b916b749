//! One test per way a runbook, its parameters, or the join of a fleet with a runbook (the
//! workload, where R6 is enforced) can be refused: file, exact line, field, value, message.

use baton_core::workload::{WorkloadError, build_workload};
use baton_core::{Fleet, InputError, Runbook};

const FILE: &str = "runbooks/patch.toml";
const FLEET_FILE: &str = "fleets/lab.toml";

/// Fixtures are written `r#"` + newline, so the first line of TOML is line 1.
fn strip(text: &str) -> &str {
    text.strip_prefix('\n').unwrap_or(text)
}

fn load(text: &str) -> Result<Runbook, InputError> {
    Runbook::from_toml(FILE, strip(text))
}

fn refused(text: &str) -> InputError {
    match load(text) {
        Ok(_) => panic!("runbook was accepted:\n{text}"),
        Err(err) => err,
    }
}

/// Asserts every part of an error; `value` is exactly as the error shows it.
#[track_caller]
fn check(
    err: &InputError,
    file: &str,
    line: Option<u32>,
    field: &str,
    value: Option<&str>,
    says: &str,
) {
    assert_eq!(err.file, file, "file of {err}");
    assert_eq!(err.line, line, "line of {err}");
    assert_eq!(err.field, field, "field of {err}");
    assert_eq!(err.value.as_deref(), value, "value of {err}");
    assert!(
        err.message.contains(says),
        "message of {err:?} should contain {says:?}"
    );
}

/// The smallest runbook the loader accepts.
const VALID: &str = r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"
run = "echo {{ server.fqdn }}"
"#;

#[test]
fn valid_minimal_runbook_loads() {
    let runbook = load(VALID).expect("valid runbook");
    assert_eq!(runbook.steps.len(), 1);
}

#[test]
fn example_runbook_loads() {
    let text = include_str!("../../../runbooks/sfb-server-update.toml");
    Runbook::from_toml("runbooks/sfb-server-update.toml", text).expect("the shipped runbook");
}

// --- TOML level ---

#[test]
fn malformed_toml() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = sh
"#,
    );
    check(
        &err,
        FILE,
        Some(3),
        "runbook.shell",
        Some("sh"),
        "string values must be quoted",
    );
}

#[test]
fn unknown_field_in_header() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shel = "sh"
"#,
    );
    check(
        &err,
        FILE,
        Some(3),
        "runbook.shel",
        Some("\"sh\""),
        "unknown field `shel`",
    );
}

#[test]
fn unknown_field_in_step() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"
retry = 2
run = "true"
"#,
    );
    check(
        &err,
        FILE,
        Some(8),
        "step.retry",
        Some("2"),
        "unknown field `retry`",
    );
}

#[test]
fn unknown_field_in_when() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"
when = { roles = "backend" }
run = "true"
"#,
    );
    check(
        &err,
        FILE,
        Some(8),
        "step.when.roles",
        Some("\"backend\""),
        "unknown field `roles`",
    );
}

#[test]
fn unknown_field_in_params() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[params.package]
defualt = "/tmp/cu.bin"
"#,
    );
    check(
        &err,
        FILE,
        Some(6),
        "params.package.defualt",
        Some("\"/tmp/cu.bin\""),
        "unknown field `defualt`",
    );
}

#[test]
fn missing_shell() {
    let err = refused(
        r#"
[runbook]
name = "patch"

[[step]]
id = "install"
timeout = "10m"
run = "true"
"#,
    );
    check(
        &err,
        FILE,
        Some(1),
        "runbook.shell",
        None,
        "missing field `shell`",
    );
}

#[test]
fn when_role_of_the_wrong_type() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"
when = { role = 3 }
run = "true"
"#,
    );
    check(
        &err,
        FILE,
        Some(8),
        "step.when.role",
        Some("3"),
        "expected a role name or an array of role names",
    );
}

// --- [runbook] ---

#[test]
fn invalid_runbook_name() {
    let err = refused(
        r#"
[runbook]
name = ""
shell = "sh"
"#,
    );
    check(
        &err,
        FILE,
        Some(2),
        "runbook.name",
        Some("\"\""),
        "must be a non-empty name",
    );
}

#[test]
fn unknown_shell() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "bash"
"#,
    );
    check(
        &err,
        FILE,
        Some(3),
        "runbook.shell",
        Some("\"bash\""),
        "unknown shell; expected \"powershell\" or \"sh\"",
    );
}

#[test]
fn bad_expected_duration() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"
expected_duration = "soon"
"#,
    );
    check(
        &err,
        FILE,
        Some(4),
        "runbook.expected_duration",
        Some("\"soon\""),
        "not a duration",
    );
}

#[test]
fn unknown_role_in_expected_duration_by_role() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[runbook.expected_duration_by_role]
backend = "12m"
back-end = "12m"
"#,
    );
    check(
        &err,
        FILE,
        Some(7),
        "runbook.expected_duration_by_role",
        Some("\"back-end\""),
        "unknown role; expected one of backend, standard",
    );
}

#[test]
fn zero_duration_in_expected_duration_by_role() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[runbook.expected_duration_by_role]
backend = "0s"
"#,
    );
    check(
        &err,
        FILE,
        Some(6),
        "runbook.expected_duration_by_role",
        Some("\"0s\""),
        "must be longer than zero",
    );
}

#[test]
fn invalid_param_name() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[params."package path"]
default = "/tmp/cu.bin"
"#,
    );
    check(
        &err,
        FILE,
        Some(5),
        "params",
        Some("\"package path\""),
        "a parameter name is letters",
    );
}

#[test]
fn no_steps() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"
"#,
    );
    check(&err, FILE, None, "step", None, "the runbook has no steps");
}

// --- [[step]] ---

#[test]
fn invalid_step_id() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install update"
timeout = "10m"
run = "true"
"#,
    );
    check(
        &err,
        FILE,
        Some(6),
        "step.id",
        Some("\"install update\""),
        "a step id is letters",
    );
}

#[test]
fn duplicate_step_id() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"
run = "true"

[[step]]
id = "install"
timeout = "10m"
run = "true"
"#,
    );
    check(
        &err,
        FILE,
        Some(11),
        "step.id",
        Some("\"install\""),
        "step ids must be unique",
    );
}

#[test]
fn bad_timeout() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "ten minutes"
run = "true"
"#,
    );
    check(
        &err,
        FILE,
        Some(7),
        "step.timeout",
        Some("\"ten minutes\""),
        "not a duration",
    );
    assert_eq!(err.owner.as_deref(), Some("step \"install\""));
}

#[test]
fn zero_timeout() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "0s"
run = "true"
"#,
    );
    check(
        &err,
        FILE,
        Some(7),
        "step.timeout",
        Some("\"0s\""),
        "must be longer than zero",
    );
}

#[test]
fn negative_retries() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"
retries = -1
run = "true"
"#,
    );
    check(
        &err,
        FILE,
        Some(8),
        "step.retries",
        Some("-1"),
        "must be zero or a positive whole number",
    );
}

#[test]
fn retries_too_large() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"
retries = 4294967296
run = "true"
"#,
    );
    check(
        &err,
        FILE,
        Some(8),
        "step.retries",
        Some("4294967296"),
        "too large",
    );
}

#[test]
fn gates_parse_and_their_mistakes_are_named() {
    let gate = |extra: &str| {
        format!(
            "[runbook]\nname = \"patch\"\nshell = \"sh\"\n\n[[step]]\nid = \"healthy\"\nrun = \"true\"\ntimeout = \"5m\"\n{extra}"
        )
    };
    let ok =
        Runbook::from_toml(FILE, &gate("kind = \"gate\"\ninterval = \"15s\"\n")).expect("a gate");
    assert_eq!(ok.steps[0].gate_interval, Some(15_000));
    let default = Runbook::from_toml(FILE, &gate("kind = \"gate\"\n")).expect("a gate");
    assert_eq!(default.steps[0].gate_interval, Some(10_000));
    let plain = Runbook::from_toml(FILE, &gate("")).expect("a command");
    assert_eq!(plain.steps[0].gate_interval, None);

    let err = Runbook::from_toml(FILE, &gate("kind = \"probe\"\n")).unwrap_err();
    check(
        &err,
        FILE,
        Some(9),
        "step.kind",
        Some("\"probe\""),
        "unknown kind",
    );
    let err = Runbook::from_toml(FILE, &gate("interval = \"15s\"\n")).unwrap_err();
    check(
        &err,
        FILE,
        Some(9),
        "step.interval",
        Some("\"15s\""),
        "only a step with kind = \"gate\"",
    );
    let err = Runbook::from_toml(FILE, &gate("kind = \"gate\"\nretries = 2\n")).unwrap_err();
    check(
        &err,
        FILE,
        Some(10),
        "step.retries",
        Some("2"),
        "it has no retries",
    );
}

#[test]
fn unknown_template_variable() {
    let err = refused(
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
    check(
        &err,
        FILE,
        Some(8),
        "step.run",
        Some("\"install --sql {{ pool.sqlserver }}\""),
        "unknown variable `pool.sqlserver`",
    );
    assert!(err.message.contains("pool.sql_server"), "lists known names");
}

#[test]
fn unknown_template_variable_in_a_variant() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"

  [[step.variant]]
  run = "install {{ server.name }}"
"#,
    );
    check(
        &err,
        FILE,
        Some(10),
        "step.variant.run",
        Some("\"install {{ server.name }}\""),
        "unknown variable `server.name`",
    );
}

#[test]
fn unclosed_placeholder() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"
run = "install {{ server.fqdn"
"#,
    );
    check(
        &err,
        FILE,
        Some(8),
        "step.run",
        Some("\"install {{ server.fqdn\""),
        "unclosed placeholder",
    );
}

#[test]
fn undeclared_param() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[params.package]
default = "/tmp/cu.bin"

[[step]]
id = "install"
timeout = "10m"
run = "install {{ params.pkg }}"
"#,
    );
    check(
        &err,
        FILE,
        Some(11),
        "step.run",
        Some("\"install {{ params.pkg }}\""),
        "uses params.pkg, which no [params.pkg] table declares",
    );
}

#[test]
fn step_with_run_and_variants() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"
run = "true"

  [[step.variant]]
  run = "false"
"#,
    );
    check(
        &err,
        FILE,
        Some(8),
        "step.run",
        None,
        "either `run` or [[step.variant]] entries, not both",
    );
}

#[test]
fn step_with_neither_run_nor_variants() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"
"#,
    );
    check(
        &err,
        FILE,
        Some(5),
        "step.run",
        None,
        "give the step a `run` command or [[step.variant]] entries",
    );
}

#[test]
fn when_on_a_step_with_variants() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"
when = { role = "backend" }

  [[step.variant]]
  run = "true"
"#,
    );
    // Points at the misplaced `when` itself.
    check(
        &err,
        FILE,
        Some(8),
        "step.when",
        None,
        "put `when` on each [[step.variant]]",
    );
}

#[test]
fn unknown_role_in_when() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"

  [[step.variant]]
  when = { role = ["frontend", "fronted"] }
  run = "true"
"#,
    );
    check(
        &err,
        FILE,
        Some(10),
        "step.variant.when.role",
        Some("\"fronted\""),
        "unknown role; expected one of backend",
    );
}

#[test]
fn unknown_edition_in_when() {
    let err = refused(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "install"
timeout = "10m"
when = { edition = "datacenter" }
run = "true"
"#,
    );
    check(
        &err,
        FILE,
        Some(8),
        "step.when.edition",
        Some("\"datacenter\""),
        "unknown edition; expected \"enterprise\" or \"standard\"",
    );
}

// --- Runbook::resolve_params ---

const WITH_PARAMS: &str = r#"
[runbook]
name = "patch"
shell = "sh"

[params.package]
default = "/tmp/cu.bin"

[params.channel]
description = "no default: the operator must give it"

[[step]]
id = "install"
timeout = "10m"
run = "install {{ params.package }} --channel {{ params.channel }}"
"#;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn params_resolve_with_defaults() {
    let runbook = load(WITH_PARAMS).expect("valid");
    runbook
        .resolve_params(&pairs(&[("channel", "stable")]), "--param")
        .expect("package has a default and channel is given");
}

#[test]
fn unknown_param() {
    let runbook = load(WITH_PARAMS).expect("valid");
    let err = runbook
        .resolve_params(&pairs(&[("channel", "stable"), ("pkg", "x")]), "--param")
        .unwrap_err();
    check(
        &err,
        "--param",
        None,
        "params.pkg",
        Some("\"x\""),
        "runbook patch has no such parameter; it has: channel, package",
    );
}

#[test]
fn param_given_to_a_runbook_without_params() {
    let runbook = load(VALID).expect("valid");
    let err = runbook
        .resolve_params(&pairs(&[("pkg", "x")]), "--param")
        .unwrap_err();
    check(
        &err,
        "--param",
        None,
        "params.pkg",
        Some("\"x\""),
        "runbook patch declares no parameters",
    );
}

#[test]
fn param_with_control_characters() {
    let runbook = load(WITH_PARAMS).expect("valid");
    let err = runbook
        .resolve_params(&pairs(&[("channel", "stable\nrm -rf /")]), "--param")
        .unwrap_err();
    check(
        &err,
        "--param",
        None,
        "params.channel",
        Some("\"stable\\nrm -rf /\""),
        "control characters (such as newlines) are not allowed",
    );
}

#[test]
fn param_with_a_quote_cannot_escape_its_quoting() {
    let runbook = load(WITH_PARAMS).expect("valid");
    for value in [
        "x'; Remove-Item C:\\ -Recurse; '",
        "x\u{2019}; calc",
        "a\"b",
        "a`b",
    ] {
        let err = runbook
            .resolve_params(&pairs(&[("channel", value)]), "--param")
            .unwrap_err();
        assert_eq!(err.field, "params.channel");
        assert!(
            err.message.contains("quote characters"),
            "{value}: {}",
            err.message
        );
    }
}

#[test]
fn param_given_twice() {
    let runbook = load(WITH_PARAMS).expect("valid");
    let err = runbook
        .resolve_params(&pairs(&[("channel", "a"), ("channel", "b")]), "--param")
        .unwrap_err();
    check(
        &err,
        "--param",
        None,
        "params.channel",
        Some("\"b\""),
        "given twice",
    );
}

#[test]
fn empty_param() {
    let runbook = load(WITH_PARAMS).expect("valid");
    let err = runbook
        .resolve_params(&pairs(&[("package", " ")]), "--param")
        .unwrap_err();
    check(
        &err,
        "--param",
        None,
        "params.package",
        Some("\" \""),
        "empty",
    );
}

#[test]
fn missing_required_param() {
    let runbook = load(WITH_PARAMS).expect("valid");
    let err = runbook.resolve_params(&[], "--param").unwrap_err();
    check(
        &err,
        "--param",
        None,
        "params.channel",
        None,
        "runbook runbooks/patch.toml requires this parameter; pass it as --param channel=VALUE",
    );
}

// --- build_workload: expected durations, R6, rendering ---

fn fleet(text: &str) -> Fleet {
    Fleet::from_toml(FLEET_FILE, strip(text)).expect("fixture fleet is valid")
}

fn workload_error(fleet: &Fleet, runbook: Option<&Runbook>) -> WorkloadError {
    let params = runbook.map(|r| r.resolve_params(&[], "--param").expect("defaults"));
    match build_workload(fleet, runbook.zip(params.as_ref())) {
        Ok(_) => panic!("workload was accepted"),
        Err(err) => err,
    }
}

fn input_error(err: WorkloadError) -> InputError {
    match err {
        WorkloadError::Input(err) => err,
        other => panic!("expected an input error, got {other}"),
    }
}

/// One front end, no expected_duration; its `[[pool.server]]` header is line 8.
const NO_DURATION: &str = r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"
"#;

#[test]
fn missing_expected_duration_without_runbook() {
    let err = input_error(workload_error(&fleet(NO_DURATION), None));
    check(
        &err,
        FLEET_FILE,
        Some(8),
        "pool.server.expected_duration",
        None,
        "missing: set it on the server, or pass --runbook",
    );
    assert_eq!(err.owner.as_deref(), Some("server \"fe01.lab.test\""));
}

#[test]
fn missing_expected_duration_with_a_runbook_without_default() {
    let runbook = load(VALID).expect("valid");
    let err = input_error(workload_error(&fleet(NO_DURATION), Some(&runbook)));
    check(
        &err,
        FLEET_FILE,
        Some(8),
        "pool.server.expected_duration",
        None,
        "runbook runbooks/patch.toml gives no default for role frontend",
    );
}

#[test]
fn runbook_default_fills_expected_duration() {
    let runbook = load(
        r#"
[runbook]
name = "patch"
shell = "sh"
expected_duration = "7m"

[[step]]
id = "install"
timeout = "10m"
run = "echo {{ server.fqdn }}"
"#,
    )
    .expect("valid");
    let params = runbook.resolve_params(&[], "--param").expect("no params");
    let workload = build_workload(&fleet(NO_DURATION), Some((&runbook, &params))).expect("ok");
    assert_eq!(workload.expected, vec![7 * 60_000]);
    assert_eq!(workload.steps[0][0].command, "echo fe01.lab.test");
}

/// A back end with `duration` in a pool with a 10-minute outage budget; the server's
/// `[[pool.server]]` header is line 10.
fn backend_fleet(duration: &str) -> Fleet {
    fleet(&format!(
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
  expected_duration = "{duration}"
"#
    ))
}

#[test]
fn r6_backend_longer_than_outage_budget() {
    let err = input_error(workload_error(&backend_fleet("12m"), None));
    check(
        &err,
        FLEET_FILE,
        Some(13),
        "pool.server.expected_duration",
        Some("\"12m\""),
        "R6: a back-end outage of 12m does not fit inside the pool's outage_budget of 10m",
    );
    let shown = err.to_string();
    assert!(shown.contains("be01.lab.test"), "names the server: {shown}");
    assert!(shown.contains("pool01.lab.test"), "names the pool: {shown}");
}

#[test]
fn r6_backend_equal_to_outage_budget() {
    // "Fits inside" is strict: the outage must end before the budget runs out.
    let err = input_error(workload_error(&backend_fleet("10m"), None));
    check(
        &err,
        FLEET_FILE,
        Some(13),
        "pool.server.expected_duration",
        Some("\"10m\""),
        "outage of 10m does not fit inside the pool's outage_budget of 10m",
    );
}

#[test]
fn r6_backend_just_inside_outage_budget_is_admitted() {
    build_workload(&backend_fleet("9m 59s"), None).expect("fits inside the budget");
}

#[test]
fn r6_standard_edition_server_with_runbook_default() {
    // The default budget is 30 minutes; the runbook gives role `standard` 30 minutes.
    let fleet = fleet(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "se01.lab.test"
edition = "standard"

  [[pool.server]]
  fqdn = "se01.lab.test"
  role = "standard"
"#,
    );
    let runbook = load(
        r#"
[runbook]
name = "patch"
shell = "sh"

[runbook.expected_duration_by_role]
standard = "30m"

[[step]]
id = "install"
timeout = "40m"
run = "true"
"#,
    )
    .expect("valid");
    let err = input_error(workload_error(&fleet, Some(&runbook)));
    check(
        &err,
        FLEET_FILE,
        Some(8),
        "pool.server.expected_duration",
        Some("\"30m\""),
        "outage of 30m (the runbook's default) does not fit inside the pool's outage_budget of 30m",
    );
    assert!(err.to_string().contains("se01.lab.test"));
}

#[test]
fn r6_does_not_apply_to_a_frontend() {
    let fleet = fleet(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
outage_budget = "10m"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"
  expected_duration = "40m"
"#,
    );
    build_workload(&fleet, None).expect("a front end does not spend the outage budget");
}

#[test]
fn render_needs_a_site_the_pool_does_not_have() {
    let fleet = fleet(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"
  expected_duration = "10m"
"#,
    );
    let runbook = load(
        r#"
[runbook]
name = "patch"
shell = "sh"

[[step]]
id = "drain"
timeout = "5m"
run = "drain --site {{ pool.site }}"
"#,
    )
    .expect("valid");
    match workload_error(&fleet, Some(&runbook)) {
        WorkloadError::Render(err) => {
            assert_eq!(err.runbook, FILE);
            assert_eq!(err.step, "drain");
            assert_eq!(err.server, "fe01.lab.test");
            assert_eq!(err.var, "pool.site");
            let shown = err.to_string();
            assert!(
                shown.contains("set site on pool pool01.lab.test"),
                "says how to fix it: {shown}"
            );
        }
        other => panic!("expected a render error, got {other}"),
    }
}

#[test]
fn idempotent_defaults_to_false_for_commands_and_true_for_gates() {
    let step = |extra: &str| {
        format!(
            "[runbook]\nname = \"patch\"\nshell = \"sh\"\n\n[[step]]\nid = \"s\"\nrun = \"true\"\ntimeout = \"5m\"\n{extra}"
        )
    };
    let idempotent =
        |extra: &str| Runbook::from_toml(FILE, &step(extra)).expect("loads").steps[0].idempotent;
    assert!(!idempotent(""));
    assert!(idempotent("idempotent = true\n"));
    assert!(idempotent("kind = \"gate\"\n"));
    assert!(!idempotent("kind = \"gate\"\nidempotent = false\n"));

    let err = Runbook::from_toml(FILE, &step("idempotent = \"yes\"\n")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{FILE}:9: `step.idempotent` = \"yes\"")),
        "{text}"
    );
    assert!(text.ends_with("expected a boolean"), "{text}");
}
