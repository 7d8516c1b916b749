//! One test per way a fleet file can be refused: each checks the file, the exact line, the
//! field, the value and that the message says what is wrong.

use baton_core::{Fleet, InputError};
use proptest::prelude::*;

const FILE: &str = "fleets/lab.toml";

/// Fixtures are written `r#"` + newline, so the first line of TOML is line 1.
fn load(text: &str) -> Result<Fleet, InputError> {
    Fleet::from_toml(FILE, text.strip_prefix('\n').unwrap_or(text))
}

fn refused(text: &str) -> InputError {
    match load(text) {
        Ok(_) => panic!("fleet was accepted:\n{text}"),
        Err(err) => err,
    }
}

/// Asserts every part of an error; `value` is exactly as the error shows it.
#[track_caller]
fn check(err: &InputError, line: Option<u32>, field: &str, value: Option<&str>, says: &str) {
    assert_eq!(err.file, FILE, "file of {err}");
    assert_eq!(err.line, line, "line of {err}");
    assert_eq!(err.field, field, "field of {err}");
    assert_eq!(err.value.as_deref(), value, "value of {err}");
    assert!(
        err.message.contains(says),
        "message of {err:?} should contain {says:?}"
    );
    // The rendered form leads with `file:line:` so editors and terminals can jump to it.
    let lead = match line {
        Some(line) => format!("{FILE}:{line}: "),
        None => format!("{FILE}: "),
    };
    assert!(err.to_string().starts_with(&lead), "display of {err}");
}

/// The smallest fleet the loader accepts; tests below change one thing in a copy of it.
const VALID: &str = r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"
"#;

// --- controls: the fixtures are otherwise valid, so each error below is the one intended ---

#[test]
fn valid_minimal_fleet_loads() {
    let fleet = load(VALID).expect("valid fleet");
    assert_eq!(fleet.name, "lab");
    assert_eq!(fleet.servers.len(), 1);
    assert_eq!(fleet.servers[0].line, Some(8));
}

#[test]
fn example_fleet_loads() {
    let text = include_str!("../../../examples/contoso.toml");
    Fleet::from_toml("examples/contoso.toml", text).expect("examples/contoso.toml is valid");
}

#[test]
fn max_failures_as_a_percentage_of_the_servers() {
    let text = include_str!("../../../examples/contoso.toml");
    let with = |limit: &str| text.replace("max_failures = 0 ", &format!("max_failures = {limit} "));
    let fleet = Fleet::from_toml("contoso.toml", &with("\"10%\"")).expect("valid");
    assert_eq!(fleet.servers.len(), 29);
    assert_eq!(fleet.max_failures, 2, "10% of 29 servers, rounded down");
    let fleet = Fleet::from_toml("contoso.toml", &with("\"100%\"")).expect("valid");
    assert_eq!(fleet.max_failures, 29);
}

#[test]
fn max_failures_percentage_out_of_range_or_malformed() {
    for bad in ["150%", "ten%", "10", "-5%"] {
        let err = refused(&VALID.replace(
            "name = \"lab\"",
            &format!("name = \"lab\"\nmax_failures = \"{bad}\""),
        ));
        check(
            &err,
            Some(3),
            "fleet.max_failures",
            Some(&format!("{bad:?}")),
            "a percentage of the fleet's servers like \"10%\"",
        );
    }
}

// --- TOML level: syntax, unknown keys, types, missing keys ---

#[test]
fn malformed_toml_unterminated_string() {
    let err = refused(
        r#"
[fleet]
name = "lab
max_parallel = 4
"#,
    );
    check(&err, Some(2), "fleet.name", None, "invalid basic string");
}

#[test]
fn malformed_toml_unclosed_table_header() {
    let err = refused(
        r#"
[fleet]
name = "lab"
[[pool]
fqdn = "pool01.lab.test"
"#,
    );
    check(&err, Some(3), "pool", None, "unclosed array table");
}

#[test]
fn malformed_toml_key_without_value() {
    let err = refused(
        r#"
[fleet]
name = "lab"
max_parallel =
"#,
    );
    check(&err, Some(3), "fleet.max_parallel", None, "must be quoted");
}

#[test]
fn duplicate_key_in_a_table() {
    let err = refused(
        r#"
[fleet]
name = "lab"
name = "lab2"
"#,
    );
    check(
        &err,
        Some(3),
        "fleet.name",
        Some("\"lab2\""),
        "set twice in the same table",
    );
}

#[test]
fn duplicate_table_header() {
    let err = refused(
        r#"
[fleet]
name = "lab"
[fleet]
max_parallel = 2
"#,
    );
    check(&err, Some(3), "fleet", None, "table is declared twice");
}

#[test]
fn unknown_field_in_fleet() {
    let err = refused(
        r#"
[fleet]
name = "lab"
max_paralel = 4   # typo
"#,
    );
    check(
        &err,
        Some(3),
        "fleet.max_paralel",
        Some("4"),
        "unknown field `max_paralel`",
    );
    assert!(
        err.message.contains("`max_parallel`"),
        "lists the known keys"
    );
}

#[test]
fn unknown_top_level_table() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[fleeet]
max_parallel = 4
"#,
    );
    check(&err, Some(4), "fleeet", None, "unknown field `fleeet`");
}

#[test]
fn unknown_field_in_site() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[site]]
name = "emea"
cap = 2
"#,
    );
    check(&err, Some(6), "site.cap", Some("2"), "unknown field `cap`");
}

#[test]
fn unknown_field_in_pool() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
sqlserver = "sql01.lab.test"
"#,
    );
    check(
        &err,
        Some(7),
        "pool.sqlserver",
        Some("\"sql01.lab.test\""),
        "unknown field `sqlserver`",
    );
}

#[test]
fn unknown_field_in_server() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"
  colocated_databases = false
"#,
    );
    check(
        &err,
        Some(11),
        "pool.server.colocated_databases",
        Some("false"),
        "unknown field `colocated_databases`",
    );
}

#[test]
fn unknown_field_in_inline_server_table() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
server = [{ fqdn = "fe01.lab.test", rol = "frontend" }]
"#,
    );
    check(
        &err,
        Some(7),
        "pool.server.rol",
        Some("\"frontend\""),
        "unknown field `rol`",
    );
}

#[test]
fn wrong_type_names_the_key() {
    let err = refused(
        r#"
[fleet]
name = "lab"
max_parallel = "8"
"#,
    );
    check(
        &err,
        Some(3),
        "fleet.max_parallel",
        Some("\"8\""),
        "expected a whole number",
    );
}

#[test]
fn wrong_type_in_server() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"
  collocated_databases = "yes"
"#,
    );
    check(
        &err,
        Some(11),
        "pool.server.collocated_databases",
        Some("\"yes\""),
        "expected a boolean",
    );
}

#[test]
fn wrong_type_in_inline_server_table() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
server = [
  { fqdn = "fe01.lab.test", role = "frontend" },
  { fqdn = "fe02.lab.test", role = 2 },
]
"#,
    );
    check(
        &err,
        Some(9),
        "pool.server.role",
        Some("2"),
        "expected a string",
    );
}

#[test]
fn number_too_large() {
    let err = refused(
        r#"
[fleet]
name = "lab"
max_parallel = 99999999999999999999
"#,
    );
    check(
        &err,
        Some(3),
        "fleet.max_parallel",
        Some("99999999999999999999"),
        "out of range",
    );
}

#[test]
fn single_bracket_table_where_an_array_is_expected() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[site]
name = "emea"
"#,
    );
    check(
        &err,
        Some(4),
        "site",
        Some("[site]"),
        "write each entry as [[site]], not [site]",
    );
}

#[test]
fn missing_edition() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"
"#,
    );
    // The line is the `[[pool]]` that lacks the key.
    check(
        &err,
        Some(4),
        "pool.edition",
        None,
        "missing field `edition`",
    );
}

#[test]
fn missing_role_in_inline_server_table() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
server = [{ fqdn = "fe01.lab.test" }]
"#,
    );
    check(
        &err,
        Some(7),
        "pool.server.role",
        None,
        "missing field `role`",
    );
}

#[test]
fn missing_fleet_table() {
    let err = refused(
        r#"
[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
"#,
    );
    // Something absent has no line.
    check(&err, None, "fleet", None, "missing field `fleet`");
}

#[test]
fn empty_file() {
    let err = refused("");
    check(&err, None, "fleet", None, "missing field `fleet`");
}

#[test]
fn missing_fleet_name() {
    let err = refused(
        r#"
[fleet]
max_parallel = 4
"#,
    );
    check(&err, Some(1), "fleet.name", None, "missing field `name`");
}

// --- [fleet] ---

#[test]
fn invalid_fleet_name() {
    let err = refused(
        r#"
[fleet]
name = "my lab"
"#,
    );
    check(
        &err,
        Some(2),
        "fleet.name",
        Some("\"my lab\""),
        "letters, digits",
    );
}

#[test]
fn fleet_max_parallel_zero() {
    let err = refused(
        r#"
[fleet]
name = "lab"
max_parallel = 0
"#,
    );
    check(
        &err,
        Some(3),
        "fleet.max_parallel",
        Some("0"),
        "must be at least 1 (leave it out for no cap)",
    );
}

#[test]
fn fleet_max_parallel_negative() {
    let err = refused(
        r#"
[fleet]
name = "lab"
max_parallel = -3
"#,
    );
    check(
        &err,
        Some(3),
        "fleet.max_parallel",
        Some("-3"),
        "must be at least 1",
    );
}

#[test]
fn fleet_max_parallel_too_large() {
    let err = refused(
        r#"
[fleet]
name = "lab"
max_parallel = 4294967296
"#,
    );
    check(
        &err,
        Some(3),
        "fleet.max_parallel",
        Some("4294967296"),
        "too large: at most 4294967295",
    );
}

#[test]
fn fleet_max_failures_too_large() {
    let err = refused(
        r#"
[fleet]
name = "lab"
max_failures = 99999999999
"#,
    );
    check(
        &err,
        Some(3),
        "fleet.max_failures",
        Some("99999999999"),
        "too large",
    );
}

#[test]
fn server_table_before_its_pool() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool.server]]
fqdn = "be01.lab.test"
role = "backend"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
"#,
    );
    assert_eq!((err.line, err.field.as_str()), (Some(8), "pool"), "{err}");
    assert!(
        err.message
            .contains("put each [[pool]] before its own sub-tables"),
        "{err}"
    );
}

#[test]
fn fleet_canary_pools_zero() {
    let err = refused(
        r#"
[fleet]
name = "lab"
canary_pools = 0
"#,
    );
    check(
        &err,
        Some(3),
        "fleet.canary_pools",
        Some("0"),
        "must be at least 1 (leave it out for no canary)",
    );
}

#[test]
fn fleet_max_failures_negative() {
    let err = refused(
        r#"
[fleet]
name = "lab"
max_failures = -1
"#,
    );
    check(
        &err,
        Some(3),
        "fleet.max_failures",
        Some("-1"),
        "must be zero or a positive whole number",
    );
}

#[test]
fn fleet_without_pools() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[site]]
name = "emea"
"#,
    );
    // Points at the fleet that has no pools.
    check(&err, Some(1), "pool", None, "the fleet has no pools");
}

// --- [[site]] ---

#[test]
fn invalid_site_name() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[site]]
name = "emea/west"
"#,
    );
    check(
        &err,
        Some(5),
        "site.name",
        Some("\"emea/west\""),
        "letters, digits",
    );
}

#[test]
fn duplicate_site_ignores_case() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[site]]
name = "emea"

[[site]]
name = "EMEA"
"#,
    );
    check(
        &err,
        Some(8),
        "site.name",
        Some("\"EMEA\""),
        "declared twice",
    );
}

#[test]
fn site_max_parallel_zero() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[site]]
name = "emea"
max_parallel = 0
"#,
    );
    check(
        &err,
        Some(6),
        "site.max_parallel",
        Some("0"),
        "must be at least 1 (leave it out for no cap)",
    );
    assert_eq!(err.owner.as_deref(), Some("site \"emea\""));
}

#[test]
fn site_max_parallel_negative() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[site]]
name = "emea"
max_parallel = -1
"#,
    );
    check(
        &err,
        Some(6),
        "site.max_parallel",
        Some("-1"),
        "must be at least 1",
    );
}

// --- [[pool]] ---

#[test]
fn invalid_pool_fqdn() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool 01.lab.test"
edition = "enterprise"
"#,
    );
    check(
        &err,
        Some(5),
        "pool.fqdn",
        Some("\"pool 01.lab.test\""),
        "not a valid FQDN",
    );
}

#[test]
fn unknown_site_lists_declared_sites() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[site]]
name = "emea"

[[site]]
name = "amer"

[[pool]]
fqdn = "pool01.lab.test"
site = "apac"
edition = "enterprise"
"#,
    );
    check(
        &err,
        Some(12),
        "pool.site",
        Some("\"apac\""),
        "unknown site; declared sites: emea, amer",
    );
}

#[test]
fn unknown_site_when_none_declared() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
site = "emea"
edition = "enterprise"
"#,
    );
    check(
        &err,
        Some(6),
        "pool.site",
        Some("\"emea\""),
        "the file declares no [[site]]",
    );
}

#[test]
fn unknown_edition() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprice"
"#,
    );
    check(
        &err,
        Some(6),
        "pool.edition",
        Some("\"enterprice\""),
        "expected \"enterprise\" or \"standard\"",
    );
    assert_eq!(err.owner.as_deref(), Some("pool \"pool01.lab.test\""));
}

#[test]
fn invalid_sql_server_fqdn() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
sql_server = "sql01.lab.test;drop"
"#,
    );
    check(
        &err,
        Some(7),
        "pool.sql_server",
        Some("\"sql01.lab.test;drop\""),
        "not a valid FQDN",
    );
}

#[test]
fn sql_server_on_standard_pool() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "se01.lab.test"
edition = "standard"
sql_server = "sql01.lab.test"
"#,
    );
    check(
        &err,
        Some(7),
        "pool.sql_server",
        Some("\"sql01.lab.test\""),
        "remove sql_server",
    );
}

#[test]
fn outage_budget_not_a_duration() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
outage_budget = "30 mins please"
"#,
    );
    check(
        &err,
        Some(7),
        "pool.outage_budget",
        Some("\"30 mins please\""),
        "not a duration",
    );
}

#[test]
fn outage_budget_zero() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
outage_budget = "0s"
"#,
    );
    check(
        &err,
        Some(7),
        "pool.outage_budget",
        Some("\"0s\""),
        "must be longer than zero",
    );
}

#[test]
fn pool_max_unavailable_zero() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
max_unavailable = 0
"#,
    );
    // Leaving max_unavailable out means 1, not "no cap": the hint must say so.
    check(
        &err,
        Some(7),
        "pool.max_unavailable",
        Some("0"),
        "must be at least 1 (leave it out for the default, 1)",
    );
}

#[test]
fn pool_max_unavailable_negative() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
max_unavailable = -2
"#,
    );
    check(
        &err,
        Some(7),
        "pool.max_unavailable",
        Some("-2"),
        "must be at least 1",
    );
}

#[test]
fn duplicate_pool_ignores_case() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
server = [{ fqdn = "fe01.lab.test", role = "frontend" }]

[[pool]]
fqdn = "POOL01.lab.test"
edition = "enterprise"
server = [{ fqdn = "fe02.lab.test", role = "frontend" }]
"#,
    );
    check(
        &err,
        Some(10),
        "pool.fqdn",
        Some("\"POOL01.lab.test\""),
        "this pool is declared twice",
    );
}

#[test]
fn pool_without_servers() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
"#,
    );
    check(
        &err,
        Some(4),
        "pool.server",
        None,
        "the pool has no servers",
    );
}

// --- [[pool.server]] ---

#[test]
fn invalid_server_fqdn() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "fe01..lab.test"
  role = "frontend"
"#,
    );
    check(
        &err,
        Some(9),
        "pool.server.fqdn",
        Some("\"fe01..lab.test\""),
        "not a valid FQDN",
    );
}

#[test]
fn unknown_role_lists_roles() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "front-end"
"#,
    );
    check(
        &err,
        Some(10),
        "pool.server.role",
        Some("\"front-end\""),
        "unknown role; expected one of backend, standard, frontend, edge, mediation, director",
    );
    assert_eq!(err.owner.as_deref(), Some("server \"fe01.lab.test\""));
}

#[test]
fn collocated_databases_on_a_frontend() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"
  collocated_databases = true
"#,
    );
    check(
        &err,
        Some(11),
        "pool.server.collocated_databases",
        Some("true"),
        "only a back end (role \"backend\") hosts collocated databases",
    );
}

#[test]
fn expected_duration_not_a_duration() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"
  expected_duration = "15"
"#,
    );
    check(
        &err,
        Some(11),
        "pool.server.expected_duration",
        Some("\"15\""),
        "not a duration",
    );
}

#[test]
fn expected_duration_zero() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"
  expected_duration = "0m"
"#,
    );
    check(
        &err,
        Some(11),
        "pool.server.expected_duration",
        Some("\"0m\""),
        "must be longer than zero",
    );
}

#[test]
fn duplicate_server_in_the_same_pool() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"
"#,
    );
    check(
        &err,
        Some(13),
        "pool.server.fqdn",
        Some("\"fe01.lab.test\""),
        "duplicate server: already declared at line 9",
    );
}

#[test]
fn duplicate_server_across_pools_ignores_case() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
server = [{ fqdn = "fe01.lab.test", role = "frontend" }]

[[pool]]
fqdn = "pool02.lab.test"
edition = "enterprise"
server = [{ fqdn = "FE01.Lab.Test", role = "frontend" }]
"#,
    );
    check(
        &err,
        Some(12),
        "pool.server.fqdn",
        Some("\"FE01.Lab.Test\""),
        "already declared at line 7; a server belongs to exactly one pool",
    );
}

// --- editions ---

#[test]
fn standard_pool_with_two_servers() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "se01.lab.test"
edition = "standard"

  [[pool.server]]
  fqdn = "se01.lab.test"
  role = "standard"

  [[pool.server]]
  fqdn = "se02.lab.test"
  role = "standard"
"#,
    );
    check(
        &err,
        Some(6),
        "pool.edition",
        Some("\"standard\""),
        "exactly one server, of role \"standard\"; found se01.lab.test (standard), se02.lab.test (standard)",
    );
}

#[test]
fn standard_pool_with_a_frontend() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "se01.lab.test"
edition = "standard"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"
"#,
    );
    check(
        &err,
        Some(6),
        "pool.edition",
        Some("\"standard\""),
        "found fe01.lab.test (frontend)",
    );
}

#[test]
fn standard_role_in_an_enterprise_pool() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "se01.lab.test"
  role = "standard"
"#,
    );
    check(
        &err,
        Some(14),
        "pool.server.role",
        Some("\"standard\""),
        "belongs in a pool with edition = \"standard\"",
    );
    assert_eq!(err.owner.as_deref(), Some("server \"se01.lab.test\""));
}

#[test]
fn enterprise_backend_without_sql_server() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "be01.lab.test"
  role = "backend"
"#,
    );
    // Points at the pool that needs the key.
    check(
        &err,
        Some(5),
        "pool.sql_server",
        None,
        "an enterprise pool with a back end needs the SQL Server FQDN",
    );
    assert_eq!(err.owner.as_deref(), Some("pool \"pool01.lab.test\""));
}

// --- pairing ---

// Pairing fixtures: pools a, b and c, with `paired_with` (or a comment) on lines 7, 13, 19.

#[test]
fn pairing_declared_on_both_sides_is_accepted() {
    let fleet = load(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "a.lab.test"
edition = "enterprise"
paired_with = "b.lab.test"
server = [{ fqdn = "fe.a.lab.test", role = "frontend" }]

[[pool]]
fqdn = "b.lab.test"
edition = "enterprise"
paired_with = "A.lab.test"
server = [{ fqdn = "fe.b.lab.test", role = "frontend" }]

[[pool]]
fqdn = "c.lab.test"
edition = "enterprise"
# not paired
server = [{ fqdn = "fe.c.lab.test", role = "frontend" }]
"#,
    )
    .expect("valid");
    assert_eq!(fleet.pools[0].paired_with, Some(1));
    assert_eq!(fleet.pools[1].paired_with, Some(0));
    assert_eq!(fleet.pools[2].paired_with, None);
}

#[test]
fn pairing_with_an_unknown_pool() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "a.lab.test"
edition = "enterprise"
# not paired
server = [{ fqdn = "fe.a.lab.test", role = "frontend" }]

[[pool]]
fqdn = "b.lab.test"
edition = "enterprise"
paired_with = "d.lab.test"
server = [{ fqdn = "fe.b.lab.test", role = "frontend" }]

[[pool]]
fqdn = "c.lab.test"
edition = "enterprise"
# not paired
server = [{ fqdn = "fe.c.lab.test", role = "frontend" }]
"#,
    );
    check(
        &err,
        Some(13),
        "pool.paired_with",
        Some("\"d.lab.test\""),
        "unknown pool: no [[pool]] has this fqdn",
    );
    assert_eq!(err.owner.as_deref(), Some("pool \"b.lab.test\""));
}

#[test]
fn pairing_with_itself() {
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "a.lab.test"
edition = "enterprise"
# not paired
server = [{ fqdn = "fe.a.lab.test", role = "frontend" }]

[[pool]]
fqdn = "b.lab.test"
edition = "enterprise"
# not paired
server = [{ fqdn = "fe.b.lab.test", role = "frontend" }]

[[pool]]
fqdn = "c.lab.test"
edition = "enterprise"
paired_with = "c.lab.test"
server = [{ fqdn = "fe.c.lab.test", role = "frontend" }]
"#,
    );
    check(
        &err,
        Some(19),
        "pool.paired_with",
        Some("\"c.lab.test\""),
        "a pool cannot be paired with itself",
    );
}

#[test]
fn pairing_chain_with_a_third_pool() {
    // a -> b, then b -> c: b is already a's partner.
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "a.lab.test"
edition = "enterprise"
paired_with = "b.lab.test"
server = [{ fqdn = "fe.a.lab.test", role = "frontend" }]

[[pool]]
fqdn = "b.lab.test"
edition = "enterprise"
paired_with = "c.lab.test"
server = [{ fqdn = "fe.b.lab.test", role = "frontend" }]

[[pool]]
fqdn = "c.lab.test"
edition = "enterprise"
# not paired
server = [{ fqdn = "fe.c.lab.test", role = "frontend" }]
"#,
    );
    check(
        &err,
        Some(13),
        "pool.paired_with",
        Some("\"c.lab.test\""),
        "pairing is one-to-one, but b.lab.test is already paired with a.lab.test",
    );
}

#[test]
fn pairing_two_pools_with_the_same_third() {
    // a -> b, then c -> b: b cannot take a second partner.
    let err = refused(
        r#"
[fleet]
name = "lab"

[[pool]]
fqdn = "a.lab.test"
edition = "enterprise"
paired_with = "b.lab.test"
server = [{ fqdn = "fe.a.lab.test", role = "frontend" }]

[[pool]]
fqdn = "b.lab.test"
edition = "enterprise"
# not paired
server = [{ fqdn = "fe.b.lab.test", role = "frontend" }]

[[pool]]
fqdn = "c.lab.test"
edition = "enterprise"
paired_with = "b.lab.test"
server = [{ fqdn = "fe.c.lab.test", role = "frontend" }]
"#,
    );
    check(
        &err,
        Some(19),
        "pool.paired_with",
        Some("\"b.lab.test\""),
        "pairing is one-to-one, but b.lab.test is already paired with a.lab.test",
    );
    assert_eq!(err.owner.as_deref(), Some("pool \"c.lab.test\""));
}

// --- never a panic ---

proptest! {
    /// Arbitrary damage to a real fleet file is refused (or accepted) but never panics, and
    /// any line reported lies inside the file.
    #[test]
    fn damaged_files_never_panic(cut in 0usize..6000, len in 0usize..40, insert in "[\\[\\]{}=\"'#\\n a-z0-9.,é-]{0,8}") {
        let original = include_str!("../../../examples/contoso.toml");
        let mut start = cut.min(original.len());
        while !original.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + len).min(original.len());
        while !original.is_char_boundary(end) {
            end -= 1;
        }
        let text = format!("{}{insert}{}", &original[..start], &original[end..]);
        if let Err(err) = Fleet::from_toml(FILE, &text) {
            let lines = u32::try_from(text.lines().count().max(1)).unwrap();
            prop_assert!(err.line.is_none_or(|l| l >= 1 && l <= lines + 1), "{err}");
            prop_assert!(!err.field.is_empty(), "{err}");
            prop_assert!(!err.message.is_empty(), "{err}");
        }
    }
}

/// A one-server fleet with `windows` appended (fleet-wide `[[window]]` or a site's).
fn with_windows(windows: &str) -> String {
    format!(
        "[fleet]\nname = \"lab\"\n\n[[site]]\nname = \"emea\"\n\n[[pool]]\nfqdn = \"se01.lab.example\"\nedition = \"standard\"\nsite = \"emea\"\n\n  [[pool.server]]\n  fqdn = \"se01.lab.example\"\n  role = \"standard\"\n  expected_duration = \"1h\"\n{windows}"
    )
}

#[test]
fn windows_load_and_a_site_replaces_the_fleets() {
    let fleet = load(&with_windows(
        "\n[[window]]\ndays = [\"mon\", \"Fri\"]\nstart = \"22:00\"\nend = \"04:00\"\ntime_zone = \"Europe/Paris\"\n",
    ))
    .expect("valid");
    assert_eq!(
        fleet.windows_of(0).describe(),
        "mon,fri 22:00-04:00 Europe/Paris"
    );
    let text = with_windows("\n[[window]]\nstart = \"22:00\"\nend = \"24:00\"\n").replace(
        "name = \"emea\"\n",
        "name = \"emea\"\n\n[[site.window]]\nstart = \"01:00\"\nend = \"05:00\"\ntime_zone = \"Asia/Tokyo\"\n",
    );
    let fleet = load(&text).expect("valid");
    assert_eq!(fleet.windows.describe(), "daily 22:00-24:00 UTC");
    assert_eq!(
        fleet.windows_of(0).describe(),
        "daily 01:00-05:00 Asia/Tokyo"
    );
}

#[test]
fn window_unknown_day() {
    let err = refused(&with_windows(
        "\n[[window]]\ndays = [\"mon\", \"funday\"]\nstart = \"22:00\"\nend = \"04:00\"\n",
    ));
    check(
        &err,
        Some(18),
        "window.days",
        Some("\"funday\""),
        "unknown day",
    );
}

#[test]
fn window_no_days() {
    let err = refused(&with_windows(
        "\n[[window]]\ndays = []\nstart = \"22:00\"\nend = \"04:00\"\n",
    ));
    check(&err, Some(18), "window.days", None, "leave `days` out");
}

#[test]
fn window_bad_start() {
    let err = refused(&with_windows(
        "\n[[window]]\nstart = \"24:00\"\nend = \"04:00\"\n",
    ));
    check(&err, Some(18), "window.start", Some("\"24:00\""), "HH:MM");
}

#[test]
fn window_bad_end() {
    let err = refused(&with_windows(
        "\n[[window]]\nstart = \"22:00\"\nend = \"4am\"\n",
    ));
    check(&err, Some(19), "window.end", Some("\"4am\""), "HH:MM");
}

#[test]
fn window_unknown_time_zone() {
    let err = refused(&with_windows(
        "\n[[window]]\nstart = \"22:00\"\nend = \"04:00\"\ntime_zone = \"Europe/Atlantis\"\n",
    ));
    check(
        &err,
        Some(20),
        "window.time_zone",
        Some("\"Europe/Atlantis\""),
        "unknown time zone",
    );
}

#[test]
fn site_window_errors_name_the_site() {
    let text = with_windows("").replace(
        "name = \"emea\"\n",
        "name = \"emea\"\n\n[[site.window]]\nstart = \"7:00\"\nend = \"09:00\"\n",
    );
    let err = refused(&text);
    check(
        &err,
        Some(8),
        "site.window.start",
        Some("\"7:00\""),
        "HH:MM",
    );
    assert!(err.to_string().contains("site \"emea\""), "{err}");
}
