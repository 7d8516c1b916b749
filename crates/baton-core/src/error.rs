//! One error type for everything a user writes by hand (fleet and runbook files, CLI values):
//! it always names the file, the line when known, the field and the offending value.

use std::fmt;

/// A rejected piece of user input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputError {
    /// The file the input came from (as the user named it).
    pub file: String,
    /// 1-based line, when the parser could locate the value.
    pub line: Option<u32>,
    /// What the value belongs to, e.g. `server "be01.contoso.com"`.
    pub owner: Option<String>,
    /// The key path, e.g. `pool.server.role`.
    pub field: String,
    /// The value as written, when there is one.
    pub value: Option<String>,
    /// What is wrong and, where possible, what would be right.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(owner) = &self.owner {
            write!(f, "{owner}: ")?;
        }
        write!(f, "`{}`", self.field)?;
        if let Some(value) = &self.value {
            write!(f, " = {value}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The text of an input file, kept to turn byte offsets into line numbers for errors.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl<'a> Source<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Self { file, text }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> u32 {
        let end = offset.min(self.text.len());
        let newlines = self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count();
        u32::try_from(newlines + 1).unwrap_or(u32::MAX)
    }

    /// Starts an error about `field` located at byte `offset` (if known).
    pub fn error(&self, offset: Option<usize>, field: impl Into<String>) -> ErrorBuilder {
        ErrorBuilder(InputError {
            file: self.file.to_string(),
            line: offset.map(|o| self.line_of(o)),
            owner: None,
            field: field.into(),
            value: None,
            message: String::new(),
        })
    }

    /// Converts a TOML parse/deserialize error (syntax, unknown field, wrong type, missing key).
    pub fn toml_error(&self, err: &toml::de::Error) -> InputError {
        let message = err.message().trim().to_string();
        let field = field_named_in(&message).unwrap_or_else(|| "(document)".to_string());
        InputError {
            file: self.file.to_string(),
            line: err.span().map(|span| self.line_of(span.start)),
            owner: None,
            field,
            value: err
                .span()
                .and_then(|span| self.text.get(span))
                .map(|raw| raw.trim().to_string())
                .filter(|raw| !raw.is_empty() && raw.len() <= 80 && !raw.contains('\n')),
            message,
        }
    }
}

/// Serde messages name the key in backticks ("unknown field `max_paralel`").
fn field_named_in(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// Fluent construction of an [`InputError`], so call sites stay one line each.
#[must_use]
pub struct ErrorBuilder(InputError);

impl ErrorBuilder {
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.0.owner = Some(owner.into());
        self
    }

    /// The value, shown quoted as the user would write it.
    pub fn value(mut self, value: impl fmt::Debug) -> Self {
        self.0.value = Some(format!("{value:?}"));
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> InputError {
        self.0.message = message.into();
        self.0
    }
}
