//! How the controller's answers look: tables for people, JSON for scripts, one-line changes
//! for logs. Pure functions of the proto messages, so they are unit-tested here.

use baton_core::time::clock;
use baton_proto::v1::{Event, RolloutStatus, ServerStatus, WorkerInfo};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;
use std::fmt::Write;

/// Rollout states after which nothing changes any more.
pub fn is_final(state: &str) -> bool {
    matches!(state, "finished" | "aborted")
}

/// Server states the rollout is done with.
fn is_done(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "skipped")
}

fn millis(seconds: f64) -> u64 {
    // `as` saturates: negative and NaN become 0.
    (seconds * 1000.0).round() as u64
}

/// An offset from the rollout start as `HH:MM:SS`. Unlike [`clock`], the seconds are always
/// shown, so a live table's columns keep their width.
pub fn hms(seconds: f64) -> String {
    let total = millis(seconds) / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        total / 3600,
        (total / 60) % 60,
        total % 60
    )
}

fn at(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "-".to_string(), hms)
}

/// One pool's progress, in the order pools first appear among the servers.
#[derive(Debug, PartialEq)]
pub struct PoolProgress<'a> {
    pub pool: &'a str,
    pub total: usize,
    /// Succeeded, failed or skipped.
    pub done: usize,
    pub running: usize,
    pub failed: usize,
}

pub fn pools(status: &RolloutStatus) -> Vec<PoolProgress<'_>> {
    let mut pools: Vec<PoolProgress<'_>> = Vec::new();
    for server in &status.servers {
        let index = match pools.iter().position(|p| p.pool == server.pool) {
            Some(i) => i,
            None => {
                pools.push(PoolProgress {
                    pool: &server.pool,
                    total: 0,
                    done: 0,
                    running: 0,
                    failed: 0,
                });
                pools.len() - 1
            }
        };
        let p = &mut pools[index];
        p.total += 1;
        p.done += usize::from(is_done(&server.state));
        p.running += usize::from(server.state == "running");
        p.failed += usize::from(server.state == "failed");
    }
    pools
}

impl PoolProgress<'_> {
    /// "3/10 done, 2 running, 1 failed"
    pub fn summary(&self) -> String {
        let mut text = format!("{}/{} done", self.done, self.total);
        if self.running > 0 {
            let _ = write!(text, ", {} running", self.running);
        }
        if self.failed > 0 {
            let _ = write!(text, ", {} failed", self.failed);
        }
        text
    }
}

/// The servers that failed, by name.
pub fn failed(status: &RolloutStatus) -> Vec<&str> {
    status
        .servers
        .iter()
        .filter(|s| s.state == "failed")
        .map(|s| s.fqdn.as_str())
        .collect()
}

/// "running", "running (no worker)" when the server still needs a worker that is not
/// connected, or "running (worker lost 00:01:05)" when its worker went away mid-update.
fn state_cell(server: &ServerStatus) -> String {
    if let Some(lost) = server.worker_lost_s {
        format!("{} (worker lost {})", server.state, hms(lost))
    } else if !server.worker_connected && matches!(server.state.as_str(), "pending" | "running") {
        format!("{} (no worker)", server.state)
    } else {
        server.state.clone()
    }
}

/// The first lines of `status`: which rollout, how far along, plan versus bound.
pub fn heading(status: &RolloutStatus) -> String {
    let mut out = String::new();
    let started = if status.created_at.is_empty() {
        String::new()
    } else {
        format!(" (started {})", status.created_at)
    };
    let remaining = status
        .expected_remaining_s
        .map_or_else(String::new, |s| format!(", expected to end in {}", hms(s)));
    let _ = writeln!(
        out,
        "Rollout {} of fleet {}: {}, elapsed {}{remaining}{started}",
        status.rollout_id,
        status.fleet,
        status.state,
        hms(status.elapsed_s)
    );
    let over = if status.lower_bound_s > 0.0 {
        format!(
            " (+{:.1}% over the bound)",
            (status.planned_makespan_s / status.lower_bound_s - 1.0) * 100.0
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "planned makespan {}, lower bound {}{over}",
        clock(millis(status.planned_makespan_s)),
        clock(millis(status.lower_bound_s))
    );
    if !status.note.is_empty() {
        let _ = writeln!(out, "{}", status.note);
    }
    if !status.trace_id.is_empty() {
        let _ = writeln!(out, "trace {}", status.trace_id);
    }
    let pools = pools(status);
    let width = pools.iter().map(|p| p.pool.len()).max().unwrap_or(0);
    for p in &pools {
        let _ = writeln!(out, "  pool {:<width$}  {}", p.pool, p.summary());
    }
    out
}

/// The `status` table: heading, then every server, started ones first in start order,
/// the rest in the controller's order.
pub fn status_table(status: &RolloutStatus) -> String {
    let mut out = heading(status);
    let mut order: Vec<&ServerStatus> = status.servers.iter().collect();
    order.sort_by(|a, b| {
        let key = |s: &ServerStatus| s.start_s.unwrap_or(f64::INFINITY);
        key(a).total_cmp(&key(b))
    });
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "server",
            "pool",
            "role",
            "state",
            "start",
            "end",
            "step",
            "waited for",
        ]);
    for s in order {
        table.add_row([
            s.fqdn.as_str(),
            s.pool.as_str(),
            s.role.as_str(),
            &state_cell(s),
            &at(s.start_s),
            &at(s.end_s),
            s.current_step.as_str(),
            s.waited_for.as_str(),
        ]);
    }
    let _ = writeln!(out, "{table}");
    out
}

/// `pause`/`resume`/`abort`: "rollout ID: STATE".
pub fn state_line(status: &RolloutStatus) -> String {
    format!("rollout {}: {}", status.rollout_id, status.state)
}

#[derive(Serialize)]
struct StatusJson<'a> {
    rollout_id: &'a str,
    fleet: &'a str,
    state: &'a str,
    created_at: &'a str,
    elapsed_s: f64,
    planned_makespan_s: f64,
    lower_bound_s: f64,
    /// Why the controller paused the rollout by itself; empty otherwise.
    note: &'a str,
    /// The rollout's OpenTelemetry trace id; empty without trace export.
    trace_id: &'a str,
    /// Seconds until it is expected to end (the scheduler's simulation); null once over.
    expected_remaining_s: Option<f64>,
    servers: Vec<ServerJson<'a>>,
}

#[derive(Serialize)]
struct ServerJson<'a> {
    fqdn: &'a str,
    pool: &'a str,
    role: &'a str,
    state: &'a str,
    start_s: Option<f64>,
    end_s: Option<f64>,
    waited_for: &'a str,
    current_step: &'a str,
    worker_connected: bool,
    worker_lost_s: Option<f64>,
}

/// The status as one JSON object; servers in the controller's order.
pub fn status_json(status: &RolloutStatus) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&StatusJson {
        rollout_id: &status.rollout_id,
        fleet: &status.fleet,
        state: &status.state,
        created_at: &status.created_at,
        elapsed_s: status.elapsed_s,
        planned_makespan_s: status.planned_makespan_s,
        lower_bound_s: status.lower_bound_s,
        note: &status.note,
        trace_id: &status.trace_id,
        expected_remaining_s: status.expected_remaining_s,
        servers: status
            .servers
            .iter()
            .map(|s| ServerJson {
                fqdn: &s.fqdn,
                pool: &s.pool,
                role: &s.role,
                state: &s.state,
                start_s: s.start_s,
                end_s: s.end_s,
                waited_for: &s.waited_for,
                current_step: &s.current_step,
                worker_connected: s.worker_connected,
                worker_lost_s: s.worker_lost_s,
            })
            .collect(),
    })
}

/// What a log line says about a server; a new line is printed when this changes.
fn server_note(s: &ServerStatus) -> String {
    let mut text = s.state.clone();
    match s.state.as_str() {
        "running" if !s.current_step.is_empty() => {
            let _ = write!(text, ", step {}", s.current_step);
        }
        "pending" if !s.waited_for.is_empty() => {
            let _ = write!(text, ", waiting for {}", s.waited_for);
        }
        "skipped" | "not_started" if !s.waited_for.is_empty() => {
            let _ = write!(text, ": {}", s.waited_for);
        }
        _ => {}
    }
    // Not the lost duration: it changes every poll and would print a line each time.
    if s.worker_lost_s.is_some() {
        text.push_str(" (worker lost)");
    } else if !s.worker_connected && matches!(s.state.as_str(), "pending" | "running") {
        text.push_str(" (no worker)");
    }
    text
}

/// `status --watch` without a terminal: one line for each thing that changed since `before`
/// (everything, the first time).
pub fn changes(before: Option<&RolloutStatus>, now: &RolloutStatus) -> Vec<String> {
    let stamp = hms(now.elapsed_s);
    let mut lines = Vec::new();
    if before.is_none_or(|b| b.state != now.state) {
        lines.push(format!(
            "{stamp} rollout {} of fleet {}: {}",
            now.rollout_id, now.fleet, now.state
        ));
    }
    for server in &now.servers {
        let note = server_note(server);
        let old = before.and_then(|b| b.servers.iter().find(|s| s.fqdn == server.fqdn));
        if old.is_none_or(|o| server_note(o) != note) {
            lines.push(format!("{stamp} {} ({}): {note}", server.fqdn, server.pool));
        }
    }
    lines
}

/// The live view's message for one pool: who runs (and on which step), who waits and why.
pub fn pool_message(status: &RolloutStatus, pool: &str) -> String {
    let servers = || status.servers.iter().filter(move |s| s.pool == pool);
    let running: Vec<String> = servers()
        .filter(|s| s.state == "running")
        .map(|s| {
            if s.current_step.is_empty() {
                s.fqdn.clone()
            } else {
                format!("{} ({})", s.fqdn, s.current_step)
            }
        })
        .collect();
    let waiting: Vec<String> = servers()
        .filter(|s| s.state == "pending")
        .map(|s| {
            if s.waited_for.is_empty() {
                s.fqdn.clone()
            } else {
                format!("{} ({})", s.fqdn, s.waited_for)
            }
        })
        .collect();
    let mut parts = Vec::new();
    if !running.is_empty() {
        parts.push(format!("running: {}", running.join(", ")));
    }
    if !waiting.is_empty() {
        parts.push(format!("waiting: {}", waiting.join(", ")));
    }
    parts.join(" · ")
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `servers` as a table, in the controller's order.
pub fn servers_table(workers: &[WorkerInfo]) -> String {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "server",
            "version",
            "platform",
            "connected",
            "last heartbeat",
            "known",
            "drops",
        ]);
    for w in workers {
        // A worker whose stream keeps dropping (a flaky network, a proxy cutting idle
        // streams) shows here long before it is lost for good.
        let drops = match w.drops {
            0 => "0".to_string(),
            n => format!("{n} (last {})", w.last_drop),
        };
        table.add_row([
            w.fqdn.as_str(),
            w.version.as_str(),
            w.platform.as_str(),
            yes_no(w.connected),
            if w.last_heartbeat.is_empty() {
                "never"
            } else {
                w.last_heartbeat.as_str()
            },
            yes_no(w.known),
            drops.as_str(),
        ]);
    }
    format!("{table}\n")
}

#[derive(Serialize)]
struct WorkerJson<'a> {
    fqdn: &'a str,
    version: &'a str,
    platform: &'a str,
    connected: bool,
    last_heartbeat: &'a str,
    known: bool,
    drops: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    last_drop: &'a str,
}

#[derive(Serialize)]
struct ServersJson<'a> {
    servers: Vec<WorkerJson<'a>>,
}

/// `servers --format json`: `{"servers": [...]}` with the proto's field names.
pub fn servers_json(workers: &[WorkerInfo]) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&ServersJson {
        servers: workers
            .iter()
            .map(|w| WorkerJson {
                fqdn: &w.fqdn,
                version: &w.version,
                platform: &w.platform,
                connected: w.connected,
                last_heartbeat: &w.last_heartbeat,
                known: w.known,
                drops: w.drops,
                last_drop: &w.last_drop,
            })
            .collect(),
    })
}

#[derive(Serialize)]
struct EventJson<'a> {
    seq: u64,
    at: &'a str,
    rollout: &'a str,
    server: &'a str,
    pool: &'a str,
    kind: &'a str,
    detail: &'a str,
}

/// One event as one JSON line with exactly the proto's seven fields.
pub fn event_json(e: &Event) -> serde_json::Result<String> {
    serde_json::to_string(&EventJson {
        seq: e.seq,
        at: &e.at,
        rollout: &e.rollout,
        server: &e.server,
        pool: &e.pool,
        kind: &e.kind,
        detail: &e.detail,
    })
}

/// One event as a human line: seq, time, kind, server (or `-`), detail.
pub fn event_line(e: &Event) -> String {
    let server = if e.server.is_empty() {
        "-"
    } else {
        e.server.as_str()
    };
    let line = format!(
        "{:>6}  {}  {:<16} {server}  {}",
        e.seq, e.at, e.kind, e.detail
    );
    line.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(fqdn: &str, pool: &str, state: &str) -> ServerStatus {
        ServerStatus {
            fqdn: fqdn.into(),
            pool: pool.into(),
            role: "FrontEnd".into(),
            state: state.into(),
            start_s: None,
            end_s: None,
            waited_for: String::new(),
            current_step: String::new(),
            worker_connected: true,
            worker_lost_s: None,
        }
    }

    fn sample() -> RolloutStatus {
        RolloutStatus {
            rollout_id: "r-42".into(),
            fleet: "contoso".into(),
            state: "running".into(),
            created_at: "2026-11-03T10:00:00Z".into(),
            elapsed_s: 754.4,
            planned_makespan_s: 3600.0,
            lower_bound_s: 3000.0,
            note: String::new(),
            trace_id: String::new(),
            expected_remaining_s: None,
            servers: vec![
                ServerStatus {
                    start_s: Some(0.0),
                    end_s: Some(600.0),
                    waited_for: "nothing".into(),
                    ..server("fe1.contoso.com", "fe", "succeeded")
                },
                ServerStatus {
                    waited_for: "pool fe: at most 1 server down".into(),
                    worker_connected: false,
                    ..server("fe3.contoso.com", "fe", "pending")
                },
                ServerStatus {
                    start_s: Some(601.0),
                    current_step: "install_cu".into(),
                    ..server("fe2.contoso.com", "fe", "running")
                },
                ServerStatus {
                    start_s: Some(10.0),
                    end_s: Some(70.0),
                    ..server("sql1.contoso.com", "be", "failed")
                },
            ],
        }
    }

    #[test]
    fn offsets_always_show_seconds() {
        assert_eq!(hms(0.0), "00:00:00");
        assert_eq!(hms(3600.0), "01:00:00");
        assert_eq!(hms(90_061.4), "25:01:01");
        assert_eq!(hms(-3.0), "00:00:00");
    }

    #[test]
    fn pool_progress_counts_done_running_failed() {
        let status = sample();
        let pools = pools(&status);
        assert_eq!(
            pools,
            vec![
                PoolProgress {
                    pool: "fe",
                    total: 3,
                    done: 1,
                    running: 1,
                    failed: 0
                },
                PoolProgress {
                    pool: "be",
                    total: 1,
                    done: 1,
                    running: 0,
                    failed: 1
                },
            ]
        );
        assert_eq!(pools[0].summary(), "1/3 done, 1 running");
        assert_eq!(pools[1].summary(), "1/1 done, 1 failed");
        assert_eq!(failed(&status), vec!["sql1.contoso.com"]);
    }

    #[test]
    fn the_heading_says_when_the_rollout_is_expected_to_end_and_its_trace() {
        let status = RolloutStatus {
            expected_remaining_s: Some(3723.0),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            ..sample()
        };
        let text = heading(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Rollout r-42 of fleet contoso: running, elapsed 00:12:34, expected to end in 01:02:03 (started 2026-11-03T10:00:00Z)"
        );
        assert!(
            lines.contains(&"trace 4bf92f3577b34da6a3ce929d0e0e4736"),
            "{text}"
        );
    }

    #[test]
    fn status_table_shows_states_steps_and_waits() {
        let text = status_table(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Rollout r-42 of fleet contoso: running, elapsed 00:12:34 (started 2026-11-03T10:00:00Z)"
        );
        assert_eq!(
            lines[1],
            "planned makespan 01:00, lower bound 00:50 (+20.0% over the bound)"
        );
        assert_eq!(lines[2], "  pool fe  1/3 done, 1 running");
        assert_eq!(lines[3], "  pool be  1/1 done, 1 failed");
        for header in [
            "server",
            "pool",
            "role",
            "state",
            "start",
            "end",
            "step",
            "waited for",
        ] {
            assert!(text.contains(header), "header {header}: {text}");
        }
        let row = |fqdn: &str| {
            lines
                .iter()
                .position(|l| l.contains(fqdn))
                .unwrap_or_else(|| panic!("no row for {fqdn}: {text}"))
        };
        // Started servers in start order, then the ones not started yet.
        assert!(
            row("fe1.") < row("sql1.") && row("sql1.") < row("fe2.") && row("fe2.") < row("fe3.")
        );
        let fe2 = lines[row("fe2.")];
        assert!(
            fe2.contains("running") && fe2.contains("00:10:01") && fe2.contains("install_cu"),
            "{fe2}"
        );
        let fe3 = lines[row("fe3.")];
        assert!(fe3.contains("pending (no worker)"), "{fe3}");
        assert!(text.contains("pool fe: at most 1 server down"), "{text}");
        let sql1 = lines[row("sql1.")];
        assert!(
            sql1.contains("failed") && sql1.contains("00:00:10") && sql1.contains("00:01:10"),
            "{sql1}"
        );
    }

    #[test]
    fn state_line_names_rollout_and_state() {
        let status = RolloutStatus {
            state: "paused".into(),
            ..sample()
        };
        assert_eq!(state_line(&status), "rollout r-42: paused");
    }

    #[test]
    fn changes_print_everything_first_then_only_what_changed() {
        let first = sample();
        let lines = changes(None, &first);
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert_eq!(lines[0], "00:12:34 rollout r-42 of fleet contoso: running");
        assert!(lines.contains(
            &"00:12:34 fe3.contoso.com (fe): pending, waiting for pool fe: at most 1 server down (no worker)"
                .to_string()
        ));
        assert!(
            lines.contains(&"00:12:34 fe2.contoso.com (fe): running, step install_cu".to_string())
        );

        let mut next = first.clone();
        next.elapsed_s = 800.0;
        assert!(changes(Some(&first), &next).is_empty());
        next.servers[2].current_step = "reboot".into();
        next.state = "paused".into();
        assert_eq!(
            changes(Some(&first), &next),
            vec![
                "00:13:20 rollout r-42 of fleet contoso: paused".to_string(),
                "00:13:20 fe2.contoso.com (fe): running, step reboot".to_string(),
            ]
        );
    }

    #[test]
    fn pool_message_names_running_and_waiting_servers() {
        let status = sample();
        assert_eq!(
            pool_message(&status, "fe"),
            "running: fe2.contoso.com (install_cu) · waiting: fe3.contoso.com (pool fe: at most 1 server down)"
        );
        assert_eq!(pool_message(&status, "be"), "");
    }

    #[test]
    fn event_json_has_exactly_the_seven_fields() {
        let event = Event {
            seq: 7,
            at: "2026-11-03T10:00:01.250Z".into(),
            rollout: "r-42".into(),
            server: String::new(),
            pool: String::new(),
            kind: "rollout_paused".into(),
            detail: String::new(),
        };
        assert_eq!(
            event_json(&event).unwrap(),
            r#"{"seq":7,"at":"2026-11-03T10:00:01.250Z","rollout":"r-42","server":"","pool":"","kind":"rollout_paused","detail":""}"#
        );
        assert_eq!(
            event_line(&event),
            "     7  2026-11-03T10:00:01.250Z  rollout_paused   -"
        );
    }
}
