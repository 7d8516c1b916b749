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

/// Who is down at one instant of a finished schedule.
struct Down {
    backends: Vec<Vec<ServerId>>,
    others: Vec<u32>,
    sites: Vec<u32>,
    total: u32,
}

/// Replays a finished schedule in time order and calls `on_start` after each server starts,
/// with who is down at that instant. A failed server keeps its pool's rules but gives back
/// its cap slots; a server still running holds everything.
fn sweep(
    fleet: &Fleet,
    records: &[ServerRecord],
    mut on_start: impl FnMut(&Down, Millis, ServerId) -> Result<(), Violation>,
) -> Result<(), Violation> {
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
            Some(Outcome::Failed) => events.push((end, CAPS_END, server)),
            _ => {}
        }
    }
    events.sort_unstable();

    let mut down = Down {
        backends: vec![Vec::new(); fleet.pools.len()],
        others: vec![0; fleet.pools.len()],
        sites: vec![0; fleet.sites.len()],
        total: 0,
    };
    for (at, kind, server) in events {
        let srv = &fleet.servers[server];
        let pool_id = srv.pool;
        let entering = kind == START;
        if kind != CAPS_END {
            if srv.role.is_backend_class() {
                if entering {
                    down.backends[pool_id].push(server);
                } else {
                    down.backends[pool_id].retain(|&s| s != server);
                }
            } else if entering {
                down.others[pool_id] += 1;
            } else {
                down.others[pool_id] -= 1;
            }
        }
        let slots = |count: &mut u32| {
            if entering { *count += 1 } else { *count -= 1 }
        };
        if let Some(site) = fleet.pools[pool_id].site {
            slots(&mut down.sites[site]);
        }
        slots(&mut down.total);
        if entering {
            on_start(&down, at, server)?;
        }
    }
    Ok(())
}

/// The highest value each rule's counter reached during a finished schedule, against its
/// limit: what `baton demo` reports at the end.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RulePeaks {
    /// R1: most back-end-class servers of one pool down at once (limit 1).
    pub backends_in_a_pool: u32,
    /// R2: most pools with back end and other servers down together (limit 0).
    pub pools_mixed: u32,
    /// R3: most other servers of one pool down at once, and that pool's `max_unavailable`.
    pub others_in_a_pool: (u32, u32),
    /// R4: most paired pools degraded together (limit 0).
    pub pairs_degraded: u32,
    /// R5: most servers down fleet-wide.
    pub fleet: u32,
    /// R5: most servers down per site, in site order.
    pub sites: Vec<u32>,
}

/// Measures [`RulePeaks`] over a finished schedule.
pub fn rule_peaks(fleet: &Fleet, records: &[ServerRecord]) -> RulePeaks {
    let mut peaks = RulePeaks {
        sites: vec![0; fleet.sites.len()],
        ..RulePeaks::default()
    };
    let _ = sweep(fleet, records, |down, _, server| {
        let pool_id = fleet.servers[server].pool;
        let pool = &fleet.pools[pool_id];
        peaks.backends_in_a_pool = peaks
            .backends_in_a_pool
            .max(down.backends[pool_id].len() as u32);
        let others = down.others[pool_id];
        // Keep the pool that came closest to (or past) its limit.
        let (best, best_limit) = peaks.others_in_a_pool;
        let (closer, as_close) = (
            u64::from(others) * u64::from(best_limit.max(1)),
            u64::from(best) * u64::from(pool.max_unavailable),
        );
        if best_limit == 0 || closer > as_close || (closer == as_close && others > best) {
            peaks.others_in_a_pool = (others, pool.max_unavailable);
        }
        let mixed = (0..fleet.pools.len())
            .filter(|&p| !down.backends[p].is_empty() && down.others[p] > 0)
            .count() as u32;
        peaks.pools_mixed = peaks.pools_mixed.max(mixed);
        let pairs = (0..fleet.pools.len())
            .filter(|&p| {
                fleet.pools[p].paired_with.is_some_and(|q| {
                    p < q && !down.backends[p].is_empty() && !down.backends[q].is_empty()
                })
            })
            .count() as u32;
        peaks.pairs_degraded = peaks.pairs_degraded.max(pairs);
        peaks.fleet = peaks.fleet.max(down.total);
        for (peak, &now) in peaks.sites.iter_mut().zip(&down.sites) {
            *peak = (*peak).max(now);
        }
        Ok(())
    });
    peaks
}

fn audit_instants(fleet: &Fleet, records: &[ServerRecord]) -> Result<(), Violation> {
    sweep(fleet, records, |down, at, server| {
        let (backends, others, sites, total) =
            (&down.backends, &down.others, &down.sites, down.total);
        let pool_id = fleet.servers[server].pool;
        let pool = &fleet.pools[pool_id];
        let site = pool.site;
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
        Ok(())
    })
}
