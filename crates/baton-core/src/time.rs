//! Virtual time. The core never reads a clock: callers pass `now` as milliseconds since the
//! rollout began, which keeps the scheduler deterministic and simulation cheap.

use std::time::Duration;

/// Milliseconds since the rollout started (or a span of them).
pub type Millis = u64;

/// The longest duration Baton accepts: far beyond any update step, and small enough that sums
/// over any fleet stay exact.
pub const MAX_DURATION: Millis = 30 * 24 * 3_600_000;

/// Parses a humantime duration ("90s", "12m", "1h30m") into milliseconds; zero is refused
/// because every duration Baton reads (budgets, timeouts, expected durations) must be positive.
pub fn parse_positive_duration(text: &str) -> Result<Millis, String> {
    let parsed = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("not a duration ({e}); write it like \"90s\", \"12m\" or \"1h30m\"")
    })?;
    let millis =
        u64::try_from(parsed.as_millis()).map_err(|_| "duration is too long".to_string())?;
    if parsed.is_zero() {
        return Err("must be longer than zero".to_string());
    }
    if millis == 0 {
        return Err("must be at least 1ms: Baton counts time in milliseconds".to_string());
    }
    if millis > MAX_DURATION {
        return Err("must be at most 30 days".to_string());
    }
    Ok(millis)
}

/// Renders a millisecond span the way humans wrote it ("12m", "1h 30m").
pub fn human(millis: Millis) -> String {
    humantime::format_duration(Duration::from_millis(millis)).to_string()
}

/// Renders an offset from the rollout start as a clock: `HH:MM`, or `HH:MM:SS` when seconds
/// matter. Hours run past 24 rather than wrapping, so long rollouts stay unambiguous.
pub fn clock(millis: Millis) -> String {
    let total_s = millis.div_ceil(1000);
    let (h, m, s) = (total_s / 3600, (total_s / 60) % 60, total_s % 60);
    if s == 0 {
        format!("{h:02}:{m:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// Milliseconds as fractional seconds, for JSON.
pub fn seconds(millis: Millis) -> f64 {
    millis as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_humantime_forms() {
        assert_eq!(parse_positive_duration("90s"), Ok(90_000));
        assert_eq!(parse_positive_duration("12m"), Ok(720_000));
        assert_eq!(parse_positive_duration("1h30m"), Ok(5_400_000));
    }

    #[test]
    fn refuses_zero_and_garbage() {
        assert!(
            parse_positive_duration("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(
            parse_positive_duration("12x")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_positive_duration("").is_err());
        assert!(
            parse_positive_duration("31days")
                .unwrap_err()
                .contains("at most 30 days")
        );
    }

    #[test]
    fn clock_shows_seconds_only_when_present() {
        assert_eq!(clock(24 * 60_000), "00:24");
        assert_eq!(clock(25 * 3_600_000 + 61_000), "25:01:01");
    }
}
