//! Reconnect delays: exponential, capped, with jitter so that a fleet of workers cut off
//! together does not knock on the restarted controller all at once. The delays start over
//! only after a session stayed healthy for a while, so a controller that ends every session
//! at once (a refusal, an overload) sees a worker back off, never a tight loop.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The first delay.
    pub initial: Duration,
    /// Doubling stops here.
    pub max: Duration,
    /// A session that lasted this long starts the delays over.
    pub healthy_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    base: Duration,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            base: policy.initial,
        }
    }

    /// How long a session must last to start the delays over.
    pub fn healthy_after(&self) -> Duration {
        self.policy.healthy_after
    }

    /// Back to the first delay (after a session stayed healthy).
    pub fn reset(&mut self) {
        self.base = self.policy.initial;
    }

    /// The next delay: between half and all of the current base, which then doubles up to the
    /// maximum ("equal jitter": spread out, yet still growing).
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base;
        self.base = base.saturating_mul(2).min(self.policy.max);
        base / 2 + base.mul_f64(random_fraction() / 2.0)
    }
}

/// A number in [0, 1), random enough for jitter (std's hasher keys are random per process and
/// change per `RandomState`), without a dependency.
fn random_fraction() -> f64 {
    let bits = RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(BackoffPolicy::default());
        let bases_ms = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000];
        for base in bases_ms {
            let delay = backoff.next_delay();
            let base = Duration::from_millis(base);
            assert!(
                delay >= base / 2 && delay <= base,
                "{delay:?} for base {base:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(500));
    }

    #[test]
    fn fractions_are_in_range() {
        for _ in 0..1000 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
