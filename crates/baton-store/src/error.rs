//! The store's error type, and URL redaction for messages that name a database.

/// Everything the store can fail with. Each message says what failed; those about connecting
/// name the database URL with its password replaced by `***`. The underlying `sqlx` error is part
/// of the message (not a separate `source()`), so printing an error with `{}` tells it all.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL {url}: expected sqlite://PATH, sqlite::memory: or postgres://USER:PASSWORD@HOST[:PORT]/DATABASE"
    )]
    UnsupportedUrl { url: String },

    #[error("invalid database URL {url}: {cause}")]
    InvalidUrl { url: String, cause: sqlx::Error },

    #[error("cannot create SQLite database {path}: directory {dir} does not exist")]
    MissingDirectory { path: String, dir: String },

    #[error("cannot open SQLite database {path}: {cause}")]
    Open { path: String, cause: sqlx::Error },

    #[error("cannot connect to database {url}: {cause}")]
    Unreachable { url: String, cause: sqlx::Error },

    #[error("cannot migrate database {url}: {cause}")]
    Migrate {
        url: String,
        cause: sqlx::migrate::MigrateError,
    },

    #[error("rollout {id} does not exist")]
    RolloutNotFound { id: i64 },

    #[error("database error while {what}: {cause}")]
    Query { what: String, cause: sqlx::Error },
}

impl StoreError {
    /// Wraps a query error, saying what the store was doing: `"appending an event to rollout 3"`.
    pub(crate) fn query(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |cause| StoreError::Query {
            what: what.into(),
            cause,
        }
    }
}

/// `url` with its password (in the user info or a `password=` parameter) replaced by `***`:
/// `postgres://baton:s3cret@db/baton` → `postgres://baton:***@db/baton`.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match head.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    match userinfo.split_once(':') {
                        Some((user, _password)) => {
                            out.push_str(user);
                            out.push_str(":***");
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(head),
    }
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                    format!("{key}=***")
                }
                _ => param.to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_masked() {
        let cases = [
            (
                "postgres://baton:s3cret@127.0.0.1:5432/baton",
                "postgres://baton:***@127.0.0.1:5432/baton",
            ),
            (
                "postgresql://u:p%40ss@h/db?sslmode=disable&password=x",
                "postgresql://u:***@h/db?sslmode=disable&password=***",
            ),
            ("postgres://baton@h/db", "postgres://baton@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("sqlite://data/baton.db", "sqlite://data/baton.db"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("postgres://a:b@c@h/db", "postgres://a:***@h/db"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }
}
