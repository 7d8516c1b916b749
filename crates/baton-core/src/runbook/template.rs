//! `{{ namespace.key }}` command templates. Variables are checked when the runbook is loaded,
//! so a typo fails `baton plan`, not a server in the middle of a rollout.

use std::fmt;

/// A value a template can reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Var {
    FleetName,
    ServerFqdn,
    ServerRole,
    PoolFqdn,
    PoolEdition,
    PoolSqlServer,
    PoolSite,
    Param(String),
}

impl Var {
    /// Every variable name a template may use, for error messages and docs.
    pub const NAMES: [&'static str; 7] = [
        "fleet.name",
        "server.fqdn",
        "server.role",
        "pool.fqdn",
        "pool.edition",
        "pool.sql_server",
        "pool.site",
    ];

    fn parse(name: &str) -> Option<Var> {
        Some(match name {
            "fleet.name" => Var::FleetName,
            "server.fqdn" => Var::ServerFqdn,
            "server.role" => Var::ServerRole,
            "pool.fqdn" => Var::PoolFqdn,
            "pool.edition" => Var::PoolEdition,
            "pool.sql_server" => Var::PoolSqlServer,
            "pool.site" => Var::PoolSite,
            _ => Var::Param(name.strip_prefix("params.")?.to_string()),
        })
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Param(name) => write!(f, "params.{name}"),
            other => {
                let index = [
                    Var::FleetName,
                    Var::ServerFqdn,
                    Var::ServerRole,
                    Var::PoolFqdn,
                    Var::PoolEdition,
                    Var::PoolSqlServer,
                    Var::PoolSite,
                ]
                .iter()
                .position(|v| v == other)
                .expect("every non-param variable is listed");
                f.write_str(Var::NAMES[index])
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Var(Var),
}

/// A parsed command template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
}

impl Template {
    /// Parses `text`; the error says what is wrong with which placeholder.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut segments = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                segments.push(Segment::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed placeholder at `{}`", &rest[open..]))?;
            let name = after[..close].trim();
            let var = Var::parse(name).ok_or_else(|| {
                format!(
                    "unknown variable `{name}`; known: {}, params.<name>",
                    Var::NAMES.join(", ")
                )
            })?;
            segments.push(Segment::Var(var));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Text(rest.to_string()));
        }
        Ok(Template {
            source: text.to_string(),
            segments,
        })
    }

    /// The variables this template uses, in order.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var(v) => Some(v),
            Segment::Text(_) => None,
        })
    }

    /// Fills the template; `lookup` returns `None` for a value the server does not have.
    pub fn render<'v>(
        &self,
        mut lookup: impl FnMut(&Var) -> Option<&'v str>,
    ) -> Result<String, Var> {
        let mut out = String::with_capacity(self.source.len() + 32);
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Var(var) => out.push_str(lookup(var).ok_or_else(|| var.clone())?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_variables() {
        let t =
            Template::parse("Install -SqlServerFqdn {{ pool.sql_server }} -Pkg '{{params.pkg}}'")
                .unwrap();
        let out = t
            .render(|v| match v {
                Var::PoolSqlServer => Some("sql01.contoso.com"),
                Var::Param(p) if p == "pkg" => Some("C:\\u.exe"),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            out,
            "Install -SqlServerFqdn sql01.contoso.com -Pkg 'C:\\u.exe'"
        );
    }

    #[test]
    fn rejects_unknown_and_unclosed_placeholders() {
        assert!(
            Template::parse("{{ pool.sql }}")
                .unwrap_err()
                .contains("unknown variable `pool.sql`")
        );
        assert!(
            Template::parse("echo {{ server.fqdn")
                .unwrap_err()
                .contains("unclosed")
        );
    }

    #[test]
    fn missing_value_names_the_variable() {
        let t = Template::parse("x {{ pool.site }}").unwrap();
        assert_eq!(t.render(|_| None), Err(Var::PoolSite));
    }
}
