//! The human view of a report: a summary and a schedule table.

use crate::inputs::Loaded;
use baton_core::Strategy;
use baton_core::report::Report;
use baton_core::simulator::SimConfig;
use baton_core::time::clock;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use std::fmt::Write;

/// What produced the report, for its first lines.
pub struct Heading {
    title: String,
}

impl Heading {
    fn describe(loaded: &Loaded, what: &str) -> String {
        let runbook = loaded.runbook.as_ref().map_or_else(
            || "no runbook".to_string(),
            |r| format!("runbook {}", r.name),
        );
        format!(
            "{what} of fleet {}: {} servers in {} pools, {runbook}",
            loaded.fleet.name,
            loaded.fleet.servers.len(),
            loaded.fleet.pools.len()
        )
    }

    pub fn plan(loaded: &Loaded, strategy: Strategy) -> Self {
        Heading {
            title: format!("{}, strategy {strategy}", Self::describe(loaded, "Plan")),
        }
    }

    pub fn simulate(loaded: &Loaded, config: &SimConfig) -> Self {
        Heading {
            title: format!(
                "{}, strategy {}, seed {}, jitter {}, failure rate {}",
                Self::describe(loaded, "Simulation"),
                config.strategy,
                config.seed,
                config.jitter,
                config.failure_rate
            ),
        }
    }
}

fn at(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "-".to_string(), |s| clock((s * 1000.0).round() as u64))
}

pub fn render(report: &Report, heading: &Heading, with_steps: bool) -> String {
    let mut out = String::new();
    let makespan = (report.makespan_s * 1000.0).round() as u64;
    let bound = (report.lower_bound_s * 1000.0).round() as u64;
    let over = if bound > 0 {
        format!(
            " (+{:.1}% over the bound)",
            (report.makespan_s / report.lower_bound_s - 1.0) * 100.0
        )
    } else {
        String::new()
    };
    let _ = writeln!(out, "{}", heading.title);
    let _ = writeln!(
        out,
        "makespan {}, lower bound {}{over}",
        clock(makespan),
        clock(bound)
    );
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for server in &report.servers {
        match counts.iter_mut().find(|(o, _)| *o == server.outcome) {
            Some((_, n)) => *n += 1,
            None => counts.push((server.outcome, 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(o, n)| format!("{n} {o}")).collect();
    let _ = writeln!(out, "{}", counts.join(", "));

    let mut order: Vec<usize> = (0..report.servers.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| report.servers[i].start_s.unwrap_or(f64::INFINITY);
        key(a).total_cmp(&key(b)).then(a.cmp(&b))
    });
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "server",
            "pool",
            "role",
            "start",
            "end",
            "outcome",
            "waited for",
        ]);
    for &i in &order {
        let s = &report.servers[i];
        table.add_row([
            s.fqdn.as_str(),
            s.pool.as_str(),
            s.role.as_str(),
            &at(s.start_s),
            &at(s.end_s),
            s.outcome,
            s.waited_for.as_deref().unwrap_or(""),
        ]);
    }
    let _ = writeln!(out, "{table}");

    if with_steps {
        for &i in &order {
            let s = &report.servers[i];
            let _ = writeln!(out, "\n{} ({}, {}):", s.fqdn, s.role, s.pool);
            for step in &s.steps {
                let _ = writeln!(out, "  {:<22} {}", step.id, step.command);
            }
        }
    }
    out
}
