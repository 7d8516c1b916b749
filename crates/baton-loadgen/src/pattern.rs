//! The FQDN of each simulated worker: a pattern such as `w{i}.load.test` with `i` counting from
//! 1, or `w{i:05}.load.test` for zero-padded numbers (`w00001.load.test`).

use std::fmt;
use std::str::FromStr;

/// A parsed `--fqdn-pattern`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FqdnPattern {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// The worker's number, left-padded with zeros to `width` digits (0: no padding).
    Index {
        width: usize,
    },
}

impl FqdnPattern {
    /// The FQDN of worker `i` (1-based).
    pub fn fqdn(&self, i: usize) -> String {
        let mut out = String::with_capacity(self.source.len() + 8);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Index { width } => out.push_str(&format!("{i:0width$}")),
            }
        }
        out
    }

    /// Checks that workers `1..=count` get valid, distinct FQDNs (distinct because the pattern
    /// has `{i}`; valid by Baton's own FQDN rules, checked on the first and the last, which
    /// differ from the others only in their digits).
    pub fn check(&self, count: usize) -> Result<(), String> {
        for i in [1, count.max(1)] {
            let fqdn = self.fqdn(i);
            if !baton_core::fleet::is_valid_fqdn(&fqdn) {
                return Err(format!(
                    "pattern {:?} gives {fqdn:?} for worker {i}, which is not a valid FQDN",
                    self.source
                ));
            }
        }
        Ok(())
    }
}

impl FromStr for FqdnPattern {
    type Err = String;

    fn from_str(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        let mut has_index = false;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("{source:?}: '}}' without '{{'"));
            }
            text.push_str(&rest[..open]);
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| format!("{source:?}: '{{' without '}}'"))?;
            let field = &rest[open + 1..close];
            let width = match field {
                "i" => 0,
                _ => match field.strip_prefix("i:0") {
                    Some(digits) if !digits.is_empty() => digits
                        .parse::<usize>()
                        .ok()
                        .filter(|w| (1..=20).contains(w))
                        .ok_or_else(|| format!("{source:?}: bad width in {{{field}}}"))?,
                    _ => {
                        return Err(format!(
                            "{source:?}: unknown field {{{field}}} (only {{i}} or {{i:0N}})"
                        ));
                    }
                },
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Index { width });
            has_index = true;
            rest = &rest[close + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        if !has_index {
            return Err(format!(
                "{source:?} has no {{i}}: every worker would have the same FQDN"
            ));
        }
        Ok(FqdnPattern {
            source: source.to_owned(),
            parts,
        })
    }
}

impl fmt::Display for FqdnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The default pattern.
pub const DEFAULT_PATTERN: &str = "w{i}.load.test";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_workers_from_the_pattern() {
        let p: FqdnPattern = DEFAULT_PATTERN.parse().unwrap();
        assert_eq!(p.fqdn(1), "w1.load.test");
        assert_eq!(p.fqdn(10_000), "w10000.load.test");
        let padded: FqdnPattern = "se{i:05}.pool{i}.example".parse().unwrap();
        assert_eq!(padded.fqdn(42), "se00042.pool42.example");
        assert_eq!(padded.fqdn(123_456), "se123456.pool123456.example");
        let bare: FqdnPattern = "{i}-w.test".parse().unwrap();
        assert_eq!(bare.fqdn(7), "7-w.test");
        assert_eq!(bare.to_string(), "{i}-w.test");
    }

    #[test]
    fn refuses_patterns_without_a_number_or_with_bad_fields() {
        for bad in [
            "w.load.test",
            "w{j}.test",
            "w{i.test",
            "w}i{.test",
            "w{i:5}.test",
            "w{i:0}.test",
            "w{i:0x}.test",
        ] {
            assert!(bad.parse::<FqdnPattern>().is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_the_fqdns_it_makes() {
        let good: FqdnPattern = "w{i}.load.test".parse().unwrap();
        assert!(good.check(10_000).is_ok());
        let bad: FqdnPattern = "w_{i}.load.test".parse().unwrap();
        assert!(bad.check(3).unwrap_err().contains("not a valid FQDN"));
    }
}
