//! Maintenance windows: when servers may be in maintenance. A server starts only if its
//! expected duration ends inside an open window; otherwise it waits for the next window long
//! enough for it. Pure: the time zone rules are compiled in (jiff's bundled tz database) and
//! the instant to judge is an input.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan as _};

/// Windows repeat every week; two weeks and a bit always hold the next opening of any window.
const LOOKAHEAD_DAYS: i64 = 16;
const MS_PER_MINUTE: i64 = 60_000;

/// One `[[window]]` entry: on these weekdays, from `start` to `end` local time in `time_zone`.
/// An `end` at or before `start` is on the next day (`22:00`–`04:00` spans midnight).
#[derive(Debug, Clone)]
pub struct Window {
    /// Monday first.
    pub days: [bool; 7],
    /// Minutes after local midnight.
    pub start: u16,
    pub end: u16,
    /// The IANA name as written (`"Europe/Paris"`, `"UTC"`).
    pub time_zone: String,
    zone: TimeZone,
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        (self.days, self.start, self.end, &self.time_zone)
            == (other.days, other.start, other.end, &other.time_zone)
    }
}

/// The day names a window accepts, Monday first.
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Window {
    /// `Err` says what is wrong with the time zone name.
    pub fn new(days: [bool; 7], start: u16, end: u16, time_zone: &str) -> Result<Self, String> {
        let zone = TimeZone::get(time_zone).map_err(|_| {
            "unknown time zone: write an IANA name like \"Europe/Paris\", \"America/New_York\" or \"UTC\"".to_string()
        })?;
        Ok(Window {
            days,
            start,
            end,
            time_zone: time_zone.to_string(),
            zone,
        })
    }

    /// Open intervals (unix ms) of this window starting on local dates `from..=to`.
    fn intervals(&self, from: Date, to: Date, out: &mut Vec<(i64, i64)>) {
        let mut date = from;
        while date <= to {
            let weekday = date.weekday().to_monday_zero_offset() as usize;
            if self.days[weekday] {
                let end_date = if self.end <= self.start {
                    date.tomorrow().ok()
                } else {
                    Some(date)
                };
                if let (Some(start), Some(end)) = (
                    self.at(date, self.start),
                    end_date.and_then(|d| self.at(d, self.end)),
                ) {
                    out.push((start, end));
                }
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
    }

    /// A local date and minute as unix ms; a time skipped by a clock change moves forward.
    fn at(&self, date: Date, minute: u16) -> Option<i64> {
        if minute >= 24 * 60 {
            return self.at(date.tomorrow().ok()?, minute - 24 * 60);
        }
        let time = Time::new((minute / 60) as i8, (minute % 60) as i8, 0, 0).ok()?;
        let zoned = date
            .to_datetime(time)
            .to_zoned_datetime(self.zone.clone())
            .ok()?;
        Some(zoned.timestamp().as_millisecond())
    }

    fn local_date(&self, unix_ms: i64) -> Option<Date> {
        let at = Timestamp::from_millisecond(unix_ms).ok()?;
        Some(at.to_zoned_datetime(self.zone.clone()).date())
    }
}

/// Whether a server of `duration` may start at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// A window is open and stays open long enough.
    Now,
    /// The next window long enough opens at this unix ms.
    At(i64),
    /// No window is ever long enough.
    Never,
}

/// The windows that apply to a server (its site's, or else the fleet's). Empty: always open.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Windows(pub Vec<Window>);

impl Windows {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The merged open intervals (unix ms) that end after `from_ms` and start before
    /// `from_ms + LOOKAHEAD_DAYS`: overlapping or touching windows (Mon 22:00–24:00 and Tue
    /// 00:00–04:00) make one interval.
    pub fn open_intervals(&self, from_ms: i64) -> Vec<(i64, i64)> {
        let horizon = from_ms.saturating_add(LOOKAHEAD_DAYS * 24 * 60 * MS_PER_MINUTE);
        self.open_intervals_between(from_ms, horizon)
    }

    /// The merged open intervals that end after `from_ms` and start before `horizon`.
    pub fn open_intervals_between(&self, from_ms: i64, horizon: i64) -> Vec<(i64, i64)> {
        let mut raw = Vec::new();
        for window in &self.0 {
            let (Some(first), Some(last)) =
                (window.local_date(from_ms), window.local_date(horizon))
            else {
                continue;
            };
            // The day before: a window that opened yesterday evening may still be open.
            let first = first.checked_sub(1.day()).unwrap_or(first);
            window.intervals(first, last, &mut raw);
        }
        raw.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (start, end) in raw {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged.retain(|&(start, end)| end > from_ms && start < horizon);
        merged
    }

    /// Whether something of `duration_ms` may start at `now_ms` (unix ms), or when it may.
    pub fn fit(&self, now_ms: i64, duration_ms: u64) -> Fit {
        if self.is_empty() {
            return Fit::Now;
        }
        fit_in(&self.open_intervals(now_ms), now_ms, duration_ms)
    }

    /// The longest stretch these windows stay open (capped at the look-ahead), in ms.
    pub fn longest_ms(&self, from_ms: i64) -> u64 {
        self.open_intervals(from_ms)
            .iter()
            .map(|&(start, end)| u64::try_from(end - start).unwrap_or(0))
            .max()
            .unwrap_or(0)
    }

    /// `mon-fri 22:00-04:00 Europe/Paris; sat 08:00-20:00 UTC`, for messages.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|w| {
                let days: Vec<&str> = DAY_NAMES
                    .iter()
                    .zip(w.days)
                    .filter(|(_, on)| *on)
                    .map(|(name, _)| *name)
                    .collect();
                let days = if days.len() == 7 {
                    "daily".to_string()
                } else {
                    days.join(",")
                };
                format!("{days} {}-{} {}", hhmm(w.start), hhmm(w.end), w.time_zone)
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// [`Windows::fit`] over intervals already computed (sorted, merged, unix ms).
pub fn fit_in(intervals: &[(i64, i64)], now_ms: i64, duration_ms: u64) -> Fit {
    let duration = i64::try_from(duration_ms).unwrap_or(i64::MAX);
    let first = intervals.partition_point(|&(_, end)| end <= now_ms);
    for &(start, end) in &intervals[first..] {
        let begin = start.max(now_ms);
        if end.saturating_sub(begin) >= duration {
            return if begin == now_ms {
                Fit::Now
            } else {
                Fit::At(begin)
            };
        }
    }
    Fit::Never
}

/// `"22:00"` -> minutes after midnight; `"24:00"` is allowed as an end.
pub fn parse_hhmm(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    const MIN: i64 = MS_PER_MINUTE;
    const HOUR: i64 = 60 * MIN;

    fn weekdays() -> [bool; 7] {
        [true, true, true, true, true, false, false]
    }

    fn paris_nights() -> Windows {
        // Mon–Fri 22:00 to 04:00 the next morning, Paris time.
        Windows(vec![
            Window::new(weekdays(), 22 * 60, 4 * 60, "Europe/Paris").unwrap(),
        ])
    }

    /// Unix ms of a civil date and time in a zone.
    fn local_ms(time_zone: &str, date: Date, hour: i8, minute: i8) -> Option<i64> {
        let zone = TimeZone::get(time_zone).ok()?;
        let time = Time::new(hour, minute, 0, 0).ok()?;
        let zoned = date.to_datetime(time).to_zoned_datetime(zone).ok()?;
        Some(zoned.timestamp().as_millisecond())
    }

    fn paris(d: Date, h: i8, m: i8) -> i64 {
        local_ms("Europe/Paris", d, h, m).unwrap()
    }

    #[test]
    fn inside_an_open_window_a_server_that_ends_in_time_starts_now() {
        // Tuesday 2026-11-24, 23:00 Paris: open until Wednesday 04:00.
        let now = paris(date(2026, 11, 24), 23, 0);
        assert_eq!(paris_nights().fit(now, (5 * HOUR) as u64), Fit::Now);
        // One that would end at 04:01 waits for Wednesday 22:00.
        assert_eq!(
            paris_nights().fit(now, (5 * HOUR + MIN) as u64),
            Fit::At(paris(date(2026, 11, 25), 22, 0))
        );
    }

    #[test]
    fn after_midnight_the_window_opened_the_evening_before_still_counts() {
        // Wednesday 01:00: Tuesday's window is open until 04:00.
        let now = paris(date(2026, 11, 25), 1, 0);
        assert_eq!(paris_nights().fit(now, (3 * HOUR) as u64), Fit::Now);
        assert_eq!(
            paris_nights().fit(now, (3 * HOUR + 1) as u64),
            Fit::At(paris(date(2026, 11, 25), 22, 0))
        );
    }

    #[test]
    fn a_weekend_waits_for_monday_evening() {
        // Saturday noon: Friday's window closed at 04:00; next is Monday 22:00.
        let now = paris(date(2026, 11, 28), 12, 0);
        assert_eq!(
            paris_nights().fit(now, HOUR as u64),
            Fit::At(paris(date(2026, 11, 30), 22, 0))
        );
        // Friday night's window still runs into Saturday 04:00.
        let early = paris(date(2026, 11, 28), 3, 0);
        assert_eq!(paris_nights().fit(early, (30 * MIN) as u64), Fit::Now);
    }

    #[test]
    fn a_server_longer_than_every_window_never_fits() {
        assert_eq!(
            paris_nights().fit(paris(date(2026, 11, 24), 23, 0), (7 * HOUR) as u64),
            Fit::Never
        );
        assert_eq!(
            paris_nights().longest_ms(paris(date(2026, 11, 24), 12, 0)),
            (6 * HOUR) as u64
        );
    }

    #[test]
    fn touching_windows_merge_and_no_windows_means_always_open() {
        let evening = Window::new([true; 7], 20 * 60, 24 * 60, "UTC").unwrap();
        let morning = Window::new([true; 7], 0, 6 * 60, "UTC").unwrap();
        let both = Windows(vec![evening, morning]);
        let now = local_ms("UTC", date(2026, 11, 24), 21, 0).unwrap();
        assert_eq!(both.fit(now, (8 * HOUR) as u64), Fit::Now);
        assert_eq!(Windows::default().fit(now, u64::MAX), Fit::Now);
    }

    #[test]
    fn clock_changes_are_local_time() {
        // Europe/Paris leaves summer time on Sunday 2026-10-25 at 03:00 -> 02:00: the night
        // of Saturday to Sunday 22:00-04:00 lasts seven hours.
        let sat_sun = Windows(vec![
            Window::new(
                [false, false, false, false, false, true, false],
                22 * 60,
                4 * 60,
                "Europe/Paris",
            )
            .unwrap(),
        ]);
        let start = paris(date(2026, 10, 24), 22, 0);
        assert_eq!(sat_sun.fit(start, (7 * HOUR) as u64), Fit::Now);
        // No other Saturday night is that long.
        assert_eq!(sat_sun.fit(start, (7 * HOUR + 1) as u64), Fit::Never);
        assert_eq!(
            sat_sun.fit(start + 2 * HOUR, (6 * HOUR) as u64),
            Fit::At(paris(date(2026, 10, 31), 22, 0))
        );
        // The same window in UTC is six hours.
        let utc = Windows(vec![
            Window::new(
                [false, false, false, false, false, true, false],
                22 * 60,
                4 * 60,
                "UTC",
            )
            .unwrap(),
        ]);
        assert_eq!(utc.longest_ms(start), (6 * HOUR) as u64);
    }

    #[test]
    fn times_and_zones_are_checked() {
        assert_eq!(parse_hhmm("22:00"), Some(1320));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        for bad in ["24:01", "7:00", "07:60", "0700", "", "aa:bb"] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
        assert!(Window::new([true; 7], 0, 60, "Mars/Olympus").is_err());
        assert_eq!(
            paris_nights().describe(),
            "mon,tue,wed,thu,fri 22:00-04:00 Europe/Paris"
        );
    }
}
