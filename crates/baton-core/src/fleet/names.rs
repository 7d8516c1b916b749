//! Syntax of the names users write. Strict on purpose: FQDNs end up inside runbook commands,
//! so anything outside hostname syntax is refused before it can reach a shell.

/// What a valid FQDN looks like, for error messages.
pub const FQDN_SYNTAX: &str = "not a valid FQDN (letters, digits and '-' in dot-separated labels)";

/// What a valid name looks like, for error messages.
pub const NAME_SYNTAX: &str = "must be a non-empty name of letters, digits, '-', '_' or '.'";

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
pub fn is_valid_fqdn(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A plain identifier (fleet and site names): letters, digits, `-`, `_`, `.`.
pub fn is_valid_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_syntax() {
        assert!(is_valid_fqdn("be01.contoso.com"));
        assert!(is_valid_fqdn("sql-01"));
        assert!(!is_valid_fqdn("be01..contoso.com"));
        assert!(!is_valid_fqdn("-be01.contoso.com"));
        assert!(!is_valid_fqdn("be01.contoso.com; rm -rf /"));
        assert!(!is_valid_fqdn(""));
    }
}
