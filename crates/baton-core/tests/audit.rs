//! The auditor must catch every broken rule: hand-made schedules, one violation each.

use baton_core::audit::audit_schedule;
use baton_core::fleet::Fleet;
use baton_core::scheduler::{Outcome, ServerRecord};

const MIN: u64 = 60_000;

const FLEET: &str = r#"
[fleet]
name = "audit"
max_parallel = 3

[[site]]
name = "emea"
max_parallel = 2

[[pool]]
fqdn = "pool01.contoso.com"
site = "emea"
edition = "enterprise"
sql_server = "sql01.contoso.com"
paired_with = "pool02.contoso.com"
backends_last = true
  [[pool.server]]
  fqdn = "be01.contoso.com"
  role = "backend"
  expected_duration = "10m"
  [[pool.server]]
  fqdn = "be02.contoso.com"
  role = "backend"
  expected_duration = "10m"
  [[pool.server]]
  fqdn = "fe01.contoso.com"
  role = "frontend"
  expected_duration = "10m"
  [[pool.server]]
  fqdn = "fe02.contoso.com"
  role = "frontend"
  expected_duration = "10m"

[[pool]]
fqdn = "pool02.contoso.com"
edition = "enterprise"
sql_server = "sql02.contoso.com"
  [[pool.server]]
  fqdn = "be03.contoso.com"
  role = "backend"
  expected_duration = "10m"
  [[pool.server]]
  fqdn = "fe03.contoso.com"
  role = "frontend"
  expected_duration = "10m"
  [[pool.server]]
  fqdn = "fe04.contoso.com"
  role = "frontend"
  expected_duration = "10m"

[[pool]]
fqdn = "se01.contoso.com"
site = "emea"
edition = "standard"
  [[pool.server]]
  fqdn = "se01.contoso.com"
  role = "standard"
  expected_duration = "10m"

[[pool]]
fqdn = "se02.contoso.com"
site = "emea"
edition = "standard"
  [[pool.server]]
  fqdn = "se02.contoso.com"
  role = "standard"
  expected_duration = "10m"

[[pool]]
fqdn = "se03.contoso.com"
edition = "standard"
  [[pool.server]]
  fqdn = "se03.contoso.com"
  role = "standard"
  expected_duration = "10m"
"#;

/// A schedule from `(server, start minute, end minute)`; unlisted servers never ran.
fn schedule(fleet: &Fleet, runs: &[(&str, u64, u64)]) -> Vec<ServerRecord> {
    let mut records = vec![ServerRecord::default(); fleet.servers.len()];
    for &(fqdn, start, end) in runs {
        let record = &mut records[fleet.server_by_fqdn(fqdn).expect("known server")];
        record.start = Some(start * MIN);
        record.end = Some(end * MIN);
        record.outcome = Some(Outcome::Succeeded);
    }
    records
}

fn broken_rule(runs: &[(&str, u64, u64)]) -> Option<&'static str> {
    let fleet = Fleet::from_toml("audit.toml", FLEET).expect("valid fleet");
    audit_schedule(&fleet, &schedule(&fleet, runs))
        .err()
        .map(|v| v.rule)
}

/// pool01's front ends one by one, then its back ends; pool02's back end while pool01's front
/// ends run, then its front ends: every rule holds.
const GOOD: &[(&str, u64, u64)] = &[
    ("fe01.contoso.com", 0, 10),
    ("be03.contoso.com", 0, 10),
    ("fe02.contoso.com", 10, 20),
    ("fe03.contoso.com", 10, 20),
    ("be01.contoso.com", 20, 30),
    ("fe04.contoso.com", 20, 30),
    ("be02.contoso.com", 30, 40),
];

fn with(changes: &[(&str, u64, u64)]) -> Vec<(&'static str, u64, u64)> {
    GOOD.iter()
        .map(|&(fqdn, start, end)| {
            changes
                .iter()
                .find(|c| c.0 == fqdn)
                .map_or((fqdn, start, end), |&(_, s, e)| (fqdn, s, e))
        })
        .collect()
}

#[test]
fn a_valid_schedule_passes() {
    assert_eq!(broken_rule(GOOD), None);
}

#[test]
fn two_back_ends_of_a_pool_break_r1() {
    assert_eq!(
        broken_rule(&with(&[("be02.contoso.com", 25, 35)])),
        Some("R1")
    );
}

#[test]
fn back_end_beside_a_front_end_breaks_r2() {
    assert_eq!(
        broken_rule(&with(&[("fe04.contoso.com", 5, 15)])),
        Some("R2")
    );
}

#[test]
fn too_many_front_ends_break_r3() {
    assert_eq!(
        broken_rule(&with(&[("fe02.contoso.com", 5, 15)])),
        Some("R3")
    );
}

#[test]
fn both_paired_pools_degraded_break_r4() {
    assert_eq!(
        broken_rule(&with(&[
            ("be03.contoso.com", 25, 35),
            ("fe04.contoso.com", 35, 45)
        ])),
        Some("R4")
    );
}

#[test]
fn a_full_site_breaks_r5() {
    // emea's cap is 2: fe01 and se01 fit, se02 is one too many.
    let runs = [
        ("fe01.contoso.com", 0, 10),
        ("se01.contoso.com", 0, 10),
        ("se02.contoso.com", 5, 15),
    ];
    assert_eq!(broken_rule(&runs), Some("R5"));
    let runs = [
        ("fe01.contoso.com", 0, 10),
        ("se01.contoso.com", 0, 10),
        ("se02.contoso.com", 10, 20),
    ];
    assert_eq!(
        broken_rule(&runs),
        None,
        "a server ending at 00:10 frees its slot at 00:10"
    );
}

#[test]
fn the_fleet_cap_breaks_r5() {
    // The fleet's cap is 3; emea holds 2 of them.
    let runs = [
        ("fe01.contoso.com", 0, 10),
        ("se01.contoso.com", 0, 10),
        ("be03.contoso.com", 0, 10),
        ("se03.contoso.com", 0, 10),
    ];
    assert_eq!(broken_rule(&runs), Some("R5"));
}

#[test]
fn a_back_end_before_its_front_ends_breaks_r7() {
    assert_eq!(
        broken_rule(&with(&[
            ("be01.contoso.com", 40, 50),
            ("be02.contoso.com", 50, 60),
            ("fe02.contoso.com", 30, 40)
        ])),
        None,
        "front ends first, back ends after: fine"
    );
    assert_eq!(
        broken_rule(&with(&[
            ("be02.contoso.com", 10, 20),
            ("fe02.contoso.com", 20, 30),
            ("be01.contoso.com", 30, 40)
        ])),
        Some("R7")
    );
}

#[test]
fn a_failed_server_stays_down() {
    let fleet = Fleet::from_toml("audit.toml", FLEET).expect("valid fleet");
    let mut records = schedule(&fleet, GOOD);
    // fe03 failed at 00:15: it holds pool02 forever, so fe04 joining it breaks R3.
    let fe03 = fleet.server_by_fqdn("fe03.contoso.com").unwrap();
    records[fe03].outcome = Some(Outcome::Failed);
    records[fe03].end = Some(15 * MIN);
    assert_eq!(
        audit_schedule(&fleet, &records).err().map(|v| v.rule),
        Some("R3")
    );
}

#[test]
fn a_failed_server_gives_back_its_cap_slot() {
    let fleet = Fleet::from_toml("audit.toml", FLEET).expect("valid fleet");
    // The fleet cap is 3. fe01 fails at 00:05; from then on three others may run.
    let runs = [
        ("fe01.contoso.com", 0, 5),
        ("se01.contoso.com", 0, 10),
        ("be03.contoso.com", 0, 10),
        ("se03.contoso.com", 5, 15),
    ];
    let mut records = schedule(&fleet, &runs);
    assert_eq!(audit_schedule(&fleet, &records).err().map(|v| v.rule), None);
    // Had fe01 still been running, se03 would have been a fourth server down.
    let fe01 = fleet.server_by_fqdn("fe01.contoso.com").unwrap();
    records[fe01].outcome = None;
    records[fe01].end = None;
    assert_eq!(
        audit_schedule(&fleet, &records).err().map(|v| v.rule),
        Some("R5")
    );
    // fe01's failure still holds its own pool: fe02 may not join it (R3).
    records[fe01].outcome = Some(Outcome::Failed);
    records[fe01].end = Some(5 * MIN);
    let fe02 = fleet.server_by_fqdn("fe02.contoso.com").unwrap();
    records[fe02] = ServerRecord {
        start: Some(20 * MIN),
        end: Some(30 * MIN),
        outcome: Some(Outcome::Succeeded),
        ..ServerRecord::default()
    };
    assert_eq!(
        audit_schedule(&fleet, &records).err().map(|v| v.rule),
        Some("R3")
    );
}

#[test]
fn rule_peaks_measure_each_counter() {
    let fleet = Fleet::from_toml("audit.toml", FLEET).expect("valid fleet");
    let peaks = baton_core::audit::rule_peaks(&fleet, &schedule(&fleet, GOOD));
    assert_eq!(peaks.backends_in_a_pool, 1);
    assert_eq!(peaks.pools_mixed, 0);
    assert_eq!(peaks.others_in_a_pool, (1, 1));
    assert_eq!(peaks.pairs_degraded, 0);
    assert_eq!(peaks.fleet, 2);
    assert_eq!(peaks.sites, vec![1]);
    // A broken schedule shows in the counters too.
    let broken = with(&[("be02.contoso.com", 25, 35)]);
    assert_eq!(
        baton_core::audit::rule_peaks(&fleet, &schedule(&fleet, &broken)).backends_in_a_pool,
        2
    );
}
