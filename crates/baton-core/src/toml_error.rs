//! Turns `toml` parse and deserialize errors into [`InputError`]s that name the key path
//! (`pool.server.role`), the value and the line, in words a TOML author uses.

use crate::error::{InputError, Source};

impl Source<'_> {
    /// Converts a TOML parse/deserialize error (syntax, unknown field, wrong type, missing key).
    /// The field is always a key path like `pool.server.role`: serde names the key only for
    /// unknown and missing fields, so for the rest it is read from the text at the error.
    pub fn toml_error(&self, err: &toml::de::Error) -> InputError {
        let raw_message = err.message().trim();
        let named = NamedKey::of(raw_message, err.span().and_then(|s| self.text.get(s)));
        // A missing top-level key has an empty span at 0: there is no line to point at.
        let span = err
            .span()
            .filter(|s| !(s.is_empty() && matches!(named, Some(NamedKey::Missing(_)))));
        let at = span.as_ref().map(|s| key_path_at(self.text, s.start));
        let field = match (&named, &at) {
            // On a header the key is the header's last part (`[fleeet]`, `[fleet]` twice).
            (Some(NamedKey::Unknown(_) | NamedKey::Duplicate(_)), Some(at)) if at.on_header => {
                at.table.join(".")
            }
            (Some(NamedKey::Unknown(name) | NamedKey::Duplicate(name)), Some(at)) => {
                join_path(&at.table, name)
            }
            (Some(NamedKey::Missing(name)), Some(at)) => {
                // The span is the table that lacks the key; inline, it is the value of `at.key`.
                let mut table = at.table.clone();
                table.extend(at.key.clone());
                join_path(&table, name)
            }
            (
                Some(NamedKey::Unknown(name) | NamedKey::Missing(name) | NamedKey::Duplicate(name)),
                None,
            ) => name.clone(),
            (None, Some(at)) => match &at.key {
                Some(key) => join_path(&at.table, key),
                None if !at.table.is_empty() => at.table.join("."),
                None => "(document)".to_string(),
            },
            (None, None) => "(document)".to_string(),
        };
        let value = match &named {
            // The span is the key itself: show what was assigned to it instead.
            Some(NamedKey::Unknown(_) | NamedKey::Duplicate(_)) => span
                .as_ref()
                .and_then(|s| assigned_value_after(self.text, s.end)),
            // The span is the whole table that lacks the key: there is no value.
            Some(NamedKey::Missing(_)) => None,
            None => span.as_ref().and_then(|s| self.text.get(s.clone())),
        }
        .map(str::trim)
        .filter(|raw| !raw.is_empty() && raw.len() <= 80 && !raw.contains('\n'))
        .map(str::to_string);
        let header = match (&at, &span) {
            (Some(at), Some(s)) if at.on_header => {
                let rest = self.text.get(s.start..).unwrap_or("");
                let line_start = self.text[..s.start.min(self.text.len())]
                    .rfind('\n')
                    .map_or(0, |n| n + 1);
                let line = self.text[line_start..].trim_start();
                Some(if rest.starts_with('[') && !rest.starts_with("[[") {
                    Header::Table
                } else if line.starts_with("[[") {
                    Header::ArrayOfTables
                } else {
                    Header::Other
                })
            }
            _ => None,
        };
        InputError {
            file: self.file.to_string(),
            line: span.as_ref().map(|s| self.line_of(s.start)),
            owner: None,
            message: plain_message(raw_message, &field, header),
            field,
            value,
        }
    }
}

/// The key an error is about, when the error names one: serde does in backticks for unknown
/// and missing fields (in other messages backticks quote a value or a token); for a duplicate
/// key the span is the repeated key.
enum NamedKey {
    Unknown(String),
    Missing(String),
    Duplicate(String),
}

impl NamedKey {
    fn of(message: &str, span_text: Option<&str>) -> Option<NamedKey> {
        let name = || {
            let start = message.find('`')? + 1;
            let len = message[start..].find('`')?;
            Some(message[start..start + len].to_string())
        };
        if message.starts_with("unknown field") {
            name().map(NamedKey::Unknown)
        } else if message.starts_with("missing field") {
            name().map(NamedKey::Missing)
        } else if message.starts_with("duplicate key") {
            let key = span_text?.trim();
            (!key.is_empty()).then(|| NamedKey::Duplicate(key.to_string()))
        } else {
            None
        }
    }
}

fn join_path(table: &[String], key: &str) -> String {
    table
        .iter()
        .map(String::as_str)
        .chain([key])
        .collect::<Vec<_>>()
        .join(".")
}

/// What kind of header line an error points at.
enum Header {
    /// The span is a whole `[table]` header.
    Table,
    /// A `[[table]]` header line.
    ArrayOfTables,
    /// Elsewhere on a header line (a key inside `[brackets]`).
    Other,
}

/// Serde speaks Rust types; users write TOML.
fn plain_message(message: &str, field: &str, header: Option<Header>) -> String {
    if message.contains(" as i128, expected i64") {
        return "number out of range: too large".to_string();
    }
    if message == "duplicate key" {
        return match header {
            // `[[pool.server]]` before any `[[pool]]` makes `pool` a plain table.
            Some(Header::ArrayOfTables) => format!(
                "`{field}` already exists as a plain table here: put each [[{field}]] before its own sub-tables (e.g. [[{field}.…]])"
            ),
            Some(_) => "this table is declared twice".to_string(),
            None => "this key is set twice in the same table".to_string(),
        };
    }
    let mut out = message
        .replace("expected i64", "expected a whole number")
        .replace("expected a sequence", "expected an array");
    if matches!(header, Some(Header::Table)) && message.contains("expected a sequence") {
        // `[site]` where `[[site]]` was meant: the usual cause of this message.
        out.push_str(&format!("; write each entry as [[{field}]], not [{field}]"));
    }
    out
}

/// Where a byte offset sits in a TOML document.
struct KeyPathAt {
    /// The table around the offset: the last `[header]` plus any inline tables opened since.
    table: Vec<String>,
    /// The key whose value is being written at the offset, if any.
    key: Option<String>,
    /// The offset is on a `[header]` line (then `table` is that header and `key` is `None`).
    on_header: bool,
}

/// Finds the key path at `offset` with a small scan of the text before it: headers, keys,
/// inline tables, brackets, strings and comments. It only has to name keys, not validate.
fn key_path_at(text: &str, offset: usize) -> KeyPathAt {
    let offset = offset.min(text.len());
    let bytes = text.as_bytes();
    let mut header: Vec<String> = Vec::new();
    let mut inline: Vec<String> = Vec::new();
    let mut key: Option<String> = None;
    let mut word = String::new();
    let mut depth = 0usize;
    let mut at_line_start = true;
    let mut i = 0;
    loop {
        if at_line_start && depth == 0 {
            // Headers are recognised at their first byte, which may be `offset` itself.
            let indent = text[i..].len() - text[i..].trim_start_matches([' ', '\t']).len();
            if text[i + indent..].starts_with('[') {
                let start = i + indent;
                let end = text[start..].find('\n').map_or(text.len(), |n| start + n);
                if offset <= end {
                    return KeyPathAt {
                        table: header_path(&text[start..end]),
                        key: None,
                        on_header: true,
                    };
                }
                header = header_path(&text[start..end]);
                inline.clear();
                key = None;
                i = end;
                continue;
            }
        }
        if i >= offset {
            break;
        }
        at_line_start = false;
        match bytes[i] {
            b'\n' => {
                at_line_start = true;
                if depth == 0 {
                    key = None; // a new line at the top level starts a new key
                }
                word.clear();
            }
            b'#' => {
                i = text[i..].find('\n').map_or(text.len(), |n| i + n);
                continue;
            }
            b'"' | b'\'' => {
                let (content, end) = skip_string(text, i);
                word = content.to_string();
                i = end;
                continue;
            }
            b'=' => key = Some(std::mem::take(&mut word)).filter(|k| !k.is_empty()),
            b'{' => {
                inline.push(key.take().unwrap_or_default());
                depth += 1;
            }
            b'}' => {
                key = inline.pop().filter(|k| !k.is_empty());
                depth = depth.saturating_sub(1);
            }
            b'[' => depth += 1,
            b']' => depth = depth.saturating_sub(1),
            b if is_key_byte(b) => {
                if i == 0 || !is_key_byte(bytes[i - 1]) {
                    word.clear();
                }
                word.push(char::from(b));
            }
            _ => {}
        }
        i += 1;
    }
    header.extend(inline.into_iter().filter(|k| !k.is_empty()));
    KeyPathAt {
        table: header,
        key,
        on_header: false,
    }
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// `[[pool.server]]  # comment` -> ["pool", "server"].
fn header_path(line: &str) -> Vec<String> {
    let inner = line.trim_start().trim_start_matches('[');
    let inner = inner.split(']').next().unwrap_or("");
    inner
        .split('.')
        .map(|part| part.trim().trim_matches(['"', '\'']).to_string())
        .filter(|part| !part.is_empty())
        .collect()
}

/// Skips the string starting at `start` (basic, literal, or either multi-line form); returns
/// its content and the offset just past it (the end of the line or text if unterminated).
fn skip_string(text: &str, start: usize) -> (&str, usize) {
    let quote = &text[start..start + 1];
    let triple = quote.repeat(3);
    let close = if text[start..].starts_with(&triple) {
        triple.as_str()
    } else {
        quote
    };
    let body = start + close.len();
    let mut i = body;
    while i < text.len() {
        let b = text.as_bytes()[i];
        if quote == "\"" && b == b'\\' {
            i += 2;
            continue;
        }
        if close.len() == 1 && b == b'\n' {
            break; // a one-line string never spans lines; the parser reports it
        }
        if text.as_bytes()[i..].starts_with(close.as_bytes()) {
            return (&text[body..i], i + close.len());
        }
        i += 1;
    }
    let end = i.min(text.len());
    (&text[body..end], end)
}

/// The value written after the key that ends at `key_end` (`key = value  # comment`), up to
/// the end of the line, a comment, or the `,`/`}` that ends it inside an inline table.
fn assigned_value_after(text: &str, key_end: usize) -> Option<&str> {
    let rest = text.get(key_end..)?;
    let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
    let value = line.trim_start().strip_prefix('=')?.trim();
    let mut quote = None;
    let mut depth = 0usize;
    for (i, c) in value.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') if depth > 0 => depth -= 1,
            (None, '#') => return Some(value[..i].trim_end()),
            (None, ',' | ']' | '}') if depth == 0 => return Some(value[..i].trim_end()),
            _ => {}
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_at(text: &str, marker: &str) -> (String, Option<String>, bool) {
        let at = key_path_at(text, text.find(marker).expect("marker in text"));
        (at.table.join("."), at.key, at.on_header)
    }

    #[test]
    fn key_path_ignores_brackets_in_comments_and_strings() {
        let text = "[fleet]\n# [[pool]] is below\nname = \"[x]\" # {\nmax_parallel = 7\n";
        assert_eq!(
            path_at(text, "7"),
            ("fleet".into(), Some("max_parallel".into()), false)
        );
    }

    #[test]
    fn key_path_skips_multi_line_strings() {
        let text = "[[step]]\nrun = \"\"\"\n[not.a.header]\nx = 1\n\"\"\"\ntimeout = 5\n";
        assert_eq!(
            path_at(text, "5"),
            ("step".into(), Some("timeout".into()), false)
        );
    }

    #[test]
    fn key_path_follows_inline_tables_and_arrays() {
        let text = "[[pool]]\nserver = [\n  { fqdn = \"a\" },\n  { fqdn = \"b\", role = 9 },\n]\n";
        assert_eq!(
            path_at(text, "9"),
            ("pool.server".into(), Some("role".into()), false)
        );
    }

    #[test]
    fn key_path_on_a_header_line() {
        let text = "[fleet]\nname = \"x\"\n  [[pool.server]]  # c\n";
        assert_eq!(path_at(text, "[[pool"), ("pool.server".into(), None, true));
        assert_eq!(path_at(text, "server"), ("pool.server".into(), None, true));
    }

    #[test]
    fn key_path_forgets_a_key_at_the_end_of_its_line() {
        let text = "[fleet]\nname = \"x\"\nwhat\n";
        assert_eq!(path_at(text, "what"), ("fleet".into(), None, false));
    }

    #[test]
    fn assigned_value_stops_at_comments_and_inline_table_ends() {
        let text = "a = \"x # y\"  # note\nb = { c = [1, 2], d = 3 }\n";
        assert_eq!(assigned_value_after(text, 1), Some("\"x # y\""));
        let c = text.find("c =").unwrap() + 1;
        assert_eq!(assigned_value_after(text, c), Some("[1, 2]"));
        let d = text.find("d =").unwrap() + 1;
        assert_eq!(assigned_value_after(text, d), Some("3"));
        assert_eq!(assigned_value_after(text, 0), None);
    }
}
