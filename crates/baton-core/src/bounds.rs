//! A lower bound on any schedule's makespan under R1–R5, to judge how close a plan comes.

use crate::fleet::Fleet;
use crate::time::Millis;

/// The largest of: the longest server; per pool, its back-end chain plus its other servers
/// spread over `max_unavailable`; per pair, both back-end chains; per capped site and for the
/// fleet, total work over the cap. `work[s]` is `None` for a server that does not run.
pub fn lower_bound(fleet: &Fleet, work: &[Option<Millis>]) -> Millis {
    let duration = |s: usize| work[s].unwrap_or(0);
    let longest = (0..work.len()).map(duration).max().unwrap_or(0);

    let mut backend_chain = vec![0; fleet.pools.len()];
    let mut per_pool = 0;
    for (id, pool) in fleet.pools.iter().enumerate() {
        let (mut others_sum, mut others_max) = (0, 0);
        for &s in &pool.servers {
            if fleet.servers[s].role.is_backend_class() {
                backend_chain[id] += duration(s);
            } else {
                others_sum += duration(s);
                others_max = others_max.max(duration(s));
            }
        }
        let spread = others_sum.div_ceil(u64::from(pool.max_unavailable));
        per_pool = per_pool.max(backend_chain[id] + others_max.max(spread));
    }

    let per_pair = fleet
        .pools
        .iter()
        .enumerate()
        .filter_map(|(id, p)| p.paired_with.map(|q| backend_chain[id] + backend_chain[q]))
        .max()
        .unwrap_or(0);

    let mut site_work = vec![0; fleet.sites.len()];
    for s in 0..work.len() {
        if let Some(site) = fleet.site_of(s) {
            site_work[site] += duration(s);
        }
    }
    let per_site = fleet
        .sites
        .iter()
        .zip(&site_work)
        .filter_map(|(site, &total)| site.max_parallel.map(|cap| total.div_ceil(u64::from(cap))))
        .max()
        .unwrap_or(0);

    let total: Millis = (0..work.len()).map(duration).sum();
    let fleet_wide = fleet
        .max_parallel
        .map_or(0, |cap| total.div_ceil(u64::from(cap)));

    longest
        .max(per_pool)
        .max(per_pair)
        .max(per_site)
        .max(fleet_wide)
}
