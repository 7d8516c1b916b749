//! The controller's own view of dispatch latency: `baton_dispatch_latency_seconds`, scraped
//! from its `/metrics` (Prometheus text format) at the start and the end of a run. Percentiles
//! are computed as Prometheus' `histogram_quantile` does: linear interpolation inside the
//! bucket the rank falls in, over the difference of the two scrapes (this run's observations).

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The histogram the controller records from a slot freeing to the next assignment sent.
pub const DISPATCH_LATENCY: &str = "baton_dispatch_latency_seconds";

/// One histogram, every series of that name summed by bucket (a histogram with extra labels,
/// such as `otel_scope_name`, is one series per label set).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// `(le, cumulative count)`, by rising `le`; the last is `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

impl Histogram {
    /// The `q` quantile (0..=1), or `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let i = self
            .buckets
            .iter()
            .position(|&(_, cumulative)| cumulative >= rank)?;
        let (upper, cumulative) = self.buckets[i];
        if upper.is_infinite() {
            // Above the highest finite bound: that bound is all that is known.
            return Some(if i == 0 { 0.0 } else { self.buckets[i - 1].0 });
        }
        let (lower, below) = if i == 0 {
            (0.0_f64.min(upper), 0.0)
        } else {
            self.buckets[i - 1]
        };
        let in_bucket = cumulative - below;
        if in_bucket <= 0.0 {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below) / in_bucket)
    }

    /// Mean observation, or `None` without observations.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// What was observed after `earlier` (an earlier scrape of the same histogram).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, count)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|&&(l, _)| l == le)
                    .map_or(0.0, |&(_, c)| c);
                (le, (count - before).max(0.0))
            })
            .collect();
        Histogram {
            buckets,
            count: (self.count - earlier.count).max(0.0),
            sum: (self.sum - earlier.sum).max(0.0),
        }
    }
}

/// The histogram `name` in a Prometheus text exposition, or `None` if it has no buckets there.
pub fn parse_histogram(text: &str, name: &str) -> Option<Histogram> {
    let bucket = format!("{name}_bucket");
    let sum = format!("{name}_sum");
    let count = format!("{name}_count");
    let mut hist = Histogram::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((series, labels, value)) = split_sample(line) else {
            continue;
        };
        if series == bucket {
            let Some(le) = label(labels, "le").and_then(parse_value) else {
                continue;
            };
            match hist.buckets.iter_mut().find(|(l, _)| *l == le) {
                Some((_, c)) => *c += value,
                None => hist.buckets.push((le, value)),
            }
        } else if series == sum {
            hist.sum += value;
        } else if series == count {
            hist.count += value;
        }
    }
    if hist.buckets.is_empty() {
        return None;
    }
    hist.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(hist)
}

/// `name{labels} value [timestamp]` → (name, labels without braces, value).
fn split_sample(line: &str) -> Option<(&str, &str, f64)> {
    let (series, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = open + line[open..].rfind('}')?;
            (&line[..open], &line[open + 1..close], &line[close + 1..])
        }
        None => {
            let space = line.find(char::is_whitespace)?;
            (&line[..space], "", &line[space..])
        }
    };
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some((series.trim(), labels, value))
}

/// The value of label `key` in `a="x",le="0.5"`.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = labels;
    loop {
        let eq = rest.find("=\"")?;
        let name = rest[..eq].trim().trim_start_matches(',').trim();
        let after = &rest[eq + 2..];
        // Label values escape `"` as `\"`.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end?;
        if name == key {
            return Some(&after[..end]);
        }
        rest = &after[end + 1..];
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// `GET url` (plain `http://HOST:PORT/PATH`) with HTTP/1.0: the body of a 200 answer.
pub async fn fetch(url: &str, timeout: Duration) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// metrics URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/metrics"),
    };
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: text/plain\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(timeout, request)
        .await
        .map_err(|_| format!("{url}: no answer within {timeout:?}"))??;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("{url}: {status}"));
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the controller's opentelemetry-prometheus exporter writes it (two scopes, to check
    /// that series are summed).
    const EXPOSITION: &str = r#"# HELP baton_dispatch_latency_seconds From a slot freeing to the next assignment sent.
# TYPE baton_dispatch_latency_seconds histogram
baton_dispatch_latency_seconds_bucket{otel_scope_name="baton-controller",le="0.0005"} 10
baton_dispatch_latency_seconds_bucket{otel_scope_name="baton-controller",le="0.001"} 30
baton_dispatch_latency_seconds_bucket{otel_scope_name="baton-controller",le="0.0025"} 80
baton_dispatch_latency_seconds_bucket{otel_scope_name="baton-controller",le="0.005"} 90
baton_dispatch_latency_seconds_bucket{otel_scope_name="baton-controller",le="0.01"} 95
baton_dispatch_latency_seconds_bucket{otel_scope_name="baton-controller",le="+Inf"} 100
baton_dispatch_latency_seconds_sum{otel_scope_name="baton-controller"} 0.25
baton_dispatch_latency_seconds_count{otel_scope_name="baton-controller"} 100
baton_dispatch_latency_seconds_bucket{otel_scope_name="other",le="0.0005"} 0
baton_dispatch_latency_seconds_bucket{otel_scope_name="other",le="0.001"} 0
baton_dispatch_latency_seconds_bucket{otel_scope_name="other",le="0.0025"} 0
baton_dispatch_latency_seconds_bucket{otel_scope_name="other",le="0.005"} 0
baton_dispatch_latency_seconds_bucket{otel_scope_name="other",le="0.01"} 0
baton_dispatch_latency_seconds_bucket{otel_scope_name="other",le="+Inf"} 100
baton_dispatch_latency_seconds_sum{otel_scope_name="other"} 5.0
baton_dispatch_latency_seconds_count{otel_scope_name="other"} 100
baton_step_duration_seconds_bucket{le="1"} 4
baton_worker_drops_total 3
"#;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn parses_and_sums_the_series_of_a_histogram() {
        let h = parse_histogram(EXPOSITION, DISPATCH_LATENCY).unwrap();
        let les: Vec<f64> = h.buckets.iter().map(|b| b.0).collect();
        assert_eq!(les, [0.0005, 0.001, 0.0025, 0.005, 0.01, f64::INFINITY]);
        let counts: Vec<f64> = h.buckets.iter().map(|b| b.1).collect();
        assert_eq!(counts, [10.0, 30.0, 80.0, 90.0, 95.0, 200.0]);
        assert!(close(h.count, 200.0));
        assert!(close(h.sum, 5.25));
        assert!(parse_histogram(EXPOSITION, "baton_nothing_seconds").is_none());
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_like_histogram_quantile() {
        let h = parse_histogram(EXPOSITION, DISPATCH_LATENCY)
            .unwrap()
            .since(&Histogram::default());
        // Only the first scope's 100 observations below +Inf matter for low quantiles.
        let only_first = Histogram {
            buckets: vec![
                (0.0005, 10.0),
                (0.001, 30.0),
                (0.0025, 80.0),
                (0.005, 90.0),
                (0.01, 95.0),
                (f64::INFINITY, 100.0),
            ],
            count: 100.0,
            sum: 0.25,
        };
        // rank 50 falls in (0.001, 0.0025] holding 30..80: 0.001 + 0.0015 * 20/50.
        assert!(close(only_first.quantile(0.5).unwrap(), 0.0016));
        // rank 5: first bucket, interpolated from 0.
        assert!(close(only_first.quantile(0.05).unwrap(), 0.00025));
        // rank 99: in +Inf: the highest finite bound.
        assert!(close(only_first.quantile(0.99).unwrap(), 0.01));
        assert!(close(only_first.mean().unwrap(), 0.0025));
        // Summed: rank 100 of 200 in +Inf.
        assert!(close(h.quantile(0.5).unwrap(), 0.01));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn the_difference_of_two_scrapes_is_this_runs_observations() {
        let before = "x_bucket{le=\"0.1\"} 5\nx_bucket{le=\"1\"} 5\nx_bucket{le=\"+Inf\"} 5\nx_sum 0.2\nx_count 5\n";
        let after = "x_bucket{le=\"0.1\"} 5\nx_bucket{le=\"1\"} 15\nx_bucket{le=\"+Inf\"} 15\nx_sum 5.2\nx_count 15\n";
        let run = parse_histogram(after, "x")
            .unwrap()
            .since(&parse_histogram(before, "x").unwrap());
        assert_eq!(
            run.buckets,
            [(0.1, 0.0), (1.0, 10.0), (f64::INFINITY, 10.0)]
        );
        assert!(close(run.mean().unwrap(), 0.5));
        // rank 5 of 10 in (0.1, 1]: 0.1 + 0.9 * 5/10.
        assert!(close(run.quantile(0.5).unwrap(), 0.55));
    }

    #[test]
    fn labels_with_escaped_quotes_and_commas() {
        assert_eq!(label(r#"a="x\",le=\"2",le="0.5""#, "le"), Some("0.5"));
        assert_eq!(label(r#"le="+Inf""#, "le"), Some("+Inf"));
        assert_eq!(label(r#"a="1""#, "le"), None);
    }
}
