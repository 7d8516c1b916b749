//! An independent check of a finished schedule against R1–R5 and R7. It shares no code with the
//! scheduler's own rule checks, so a bug there cannot hide itself here. Property tests run it
//! on every simulated rollout; `baton simulate` runs it too before printing anything.

use crate::fleet::{Fleet, ServerId};
use crate::scheduler::{Outcome, ServerRecord};
use crate::time::{Millis, clock};

/// A rule broken at some instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule} broken at {}: {detail}", clock(*.at))]
pub struct Violation {
    pub rule: &'static str,
    pub at: Millis,
    pub detail: String,
}

/// Checks that at every instant of the schedule R1–R5 hold, and R7 for pools that ask for it.
/// Intervals are half-open: a server ending at `t` and one starting at `t` never overlap. A
/// failed server keeps holding its pool's rules forever (it stays down until repaired) but
/// gives back its site and fleet slots when it fails; a server still running holds everything.
pub fn audit_schedule(fleet: &Fleet, records: &[ServerRecord]) -> Result<(), Violation> {
    audit_instants(fleet, records)?;
    audit_backends_last(fleet, records)
}

/// R7: in a `backends_last` pool, a back-end-class server starts only once every other server
/// of the pool has succeeded.
fn audit_backends_last(fleet: &Fleet, records: &[ServerRecord]) -> Result<(), Violation> {
    for pool in fleet.pools.iter().filter(|p| p.backends_last) {
        let (backends, others): (Vec<ServerId>, Vec<ServerId>) = pool
            .servers
            .iter()
            .partition(|&&s| fleet.servers[s].role.is_backend_class());
        for &backend in &backends {
            let Some(start) = records[backend].start else {
                continue;
            };
            let early = others.iter().find(|&&other| {
                let done = &records[other];
                done.outcome != Some(Outcome::Succeeded) || done.end.is_none_or(|end| end > start)
            });
            if let Some(&other) = early {
                return Err(Violation {
                    rule: "R7",
                    at: start,
                    detail: format!(
                        "{} started in {} before {} was done",
                        fleet.servers[backend].fqdn, pool.fqdn, fleet.servers[other].fqdn
                    ),
                });
            }
        }
    }
    Ok(())
}

fn audit_instants(fleet: &Fleet, records: &[ServerRecord]) -> Result<(), Violation> {
    // At one instant, leaving comes before starting (half-open intervals).
    const END: u8 = 0;
    const CAPS_END: u8 = 1;
    const START: u8 = 2;
    let mut events: Vec<(Millis, u8, ServerId)> = Vec::new();
    for (server, record) in records.iter().enumerate() {
        let Some(start) = record.start else { continue };
        events.push((start, START, server));
        let end = record.end.unwrap_or(start);
        match record.outcome {
            Some(Outcome::Succeeded) => events.push((end, END, server)),
            // A failed server keeps its pool's rules but gives back its cap slots.
            Some(Outcome::Failed) => events.push((end, CAPS_END, server)),
            _ => {}
        }
    }
    events.sort_unstable();

    let pools = fleet.pools.len();
    let mut backends: Vec<Vec<ServerId>> = vec![Vec::new(); pools];
    let mut others = vec![0u32; pools];
    let mut sites = vec![0u32; fleet.sites.len()];
    let mut total = 0u32;
    for (at, kind, server) in events {
        let srv = &fleet.servers[server];
        let pool_id = srv.pool;
        let pool = &fleet.pools[pool_id];
        let site = pool.site;
        let entering = kind == START;
        if kind != CAPS_END {
            if srv.role.is_backend_class() {
                if entering {
                    backends[pool_id].push(server);
                } else {
                    backends[pool_id].retain(|&s| s != server);
                }
            } else if entering {
                others[pool_id] += 1;
            } else {
                others[pool_id] -= 1;
            }
        }
        let slots = |count: &mut u32| {
            if entering { *count += 1 } else { *count -= 1 }
        };
        if let Some(site) = site {
            slots(&mut sites[site]);
        }
        slots(&mut total);
        if !entering {
            continue;
        }
        let fail = |rule: &'static str, detail: String| Err(Violation { rule, at, detail });
        let names = |ids: &[ServerId]| {
            ids.iter()
                .map(|&s| fleet.servers[s].fqdn.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if backends[pool_id].len() > 1 {
            return fail(
                "R1",
                format!(
                    "{} back ends down in {}: {}",
                    backends[pool_id].len(),
                    pool.fqdn,
                    names(&backends[pool_id])
                ),
            );
        }
        if !backends[pool_id].is_empty() && others[pool_id] > 0 {
            return fail(
                "R2",
                format!(
                    "{} has its back end {} and {} other server(s) down together",
                    pool.fqdn,
                    names(&backends[pool_id]),
                    others[pool_id]
                ),
            );
        }
        if others[pool_id] > pool.max_unavailable {
            return fail(
                "R3",
                format!(
                    "{} has {} servers down, max_unavailable = {}",
                    pool.fqdn, others[pool_id], pool.max_unavailable
                ),
            );
        }
        if let Some(partner) = pool.paired_with
            && !backends[pool_id].is_empty()
            && !backends[partner].is_empty()
        {
            return fail(
                "R4",
                format!(
                    "paired pools {} and {} degraded together ({} and {})",
                    pool.fqdn,
                    fleet.pools[partner].fqdn,
                    names(&backends[pool_id]),
                    names(&backends[partner])
                ),
            );
        }
        if let Some(site) = site
            && let Some(cap) = fleet.sites[site].max_parallel
            && sites[site] > cap
        {
            return fail(
                "R5",
                format!(
                    "site {} has {} servers down, max_parallel = {cap}",
                    fleet.sites[site].name, sites[site]
                ),
            );
        }
        if let Some(cap) = fleet.max_parallel
            && total > cap
        {
            return fail(
                "R5",
                format!("fleet has {total} servers down, max_parallel = {cap}"),
            );
        }
    }
    Ok(())
}
