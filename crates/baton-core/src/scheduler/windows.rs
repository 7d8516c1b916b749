//! The scheduler's view of maintenance windows: each server's open intervals, precomputed in
//! the scheduler's own time (ms since the rollout began), and the earliest opening any
//! waiting server needs, so the driver knows when to wake it (`Event::Tick`).

use crate::fleet::{Fleet, ServerId};
use crate::time::Millis;
use crate::window::Windows;

/// Precomputed this far ahead; beyond it, intervals are computed on demand.
const PRECOMPUTED_DAYS: i64 = 120;

#[derive(Debug, Clone, Default)]
pub struct WindowGate {
    /// Unix ms of the scheduler's time 0.
    origin_ms: i64,
    /// Distinct window sets (the fleet's, each site's), with their open intervals in unix ms.
    sets: Vec<(Windows, Vec<(i64, i64)>)>,
    /// Server -> index into `sets`; `None`: no window, always open.
    of_server: Vec<Option<usize>>,
}

/// What the gate says about starting a server now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Its next window long enough opens at this scheduler time.
    OpensAt(Millis),
    /// No window is ever long enough.
    Never,
}

impl WindowGate {
    pub fn new(fleet: &Fleet, origin_ms: i64) -> Self {
        let mut sets: Vec<(Windows, Vec<(i64, i64)>)> = Vec::new();
        let horizon = origin_ms.saturating_add(PRECOMPUTED_DAYS * 86_400_000);
        let of_server = (0..fleet.servers.len())
            .map(|server| {
                let windows = fleet.windows_of(server);
                if windows.is_empty() {
                    return None;
                }
                Some(match sets.iter().position(|(w, _)| w == windows) {
                    Some(index) => index,
                    None => {
                        let intervals = windows.open_intervals_between(origin_ms, horizon);
                        sets.push((windows.clone(), intervals));
                        sets.len() - 1
                    }
                })
            })
            .collect();
        WindowGate {
            origin_ms,
            sets,
            of_server,
        }
    }

    /// Whether `server`, expected to take `duration`, may start at scheduler time `now`.
    pub fn check(&self, server: ServerId, now: Millis, duration: Millis) -> Gate {
        let Some(set) = self.of_server.get(server).copied().flatten() else {
            return Gate::Open;
        };
        let (windows, intervals) = &self.sets[set];
        let now_ms = self
            .origin_ms
            .saturating_add(i64::try_from(now).unwrap_or(i64::MAX));
        let fit = match crate::window::fit_in(intervals, now_ms, duration) {
            // Past the precomputed stretch (a rollout of months): ask the windows directly.
            crate::window::Fit::Never if intervals.last().is_none_or(|&(_, end)| end <= now_ms) => {
                windows.fit(now_ms, duration)
            }
            fit => fit,
        };
        match fit {
            crate::window::Fit::Now => Gate::Open,
            crate::window::Fit::At(at) => {
                Gate::OpensAt(u64::try_from(at - self.origin_ms).unwrap_or(0))
            }
            crate::window::Fit::Never => Gate::Never,
        }
    }
}
