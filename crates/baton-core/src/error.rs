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
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
    /// Byte offset of every newline, so a line lookup is a binary search: the loader asks for
    /// one per server, and a scan from the top each time would be quadratic in the file size.
    newlines: Vec<usize>,
}

impl<'a> Source<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        let newlines = text
            .bytes()
            .enumerate()
            .filter(|&(_, b)| b == b'\n')
            .map(|(i, _)| i)
            .collect();
        Self {
            file,
            text,
            newlines,
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> u32 {
        let newlines_before = self.newlines.partition_point(|&at| at < offset);
        u32::try_from(newlines_before + 1).unwrap_or(u32::MAX)
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

/// Why a whole number read from a file is out of range, if it is: below `min` (0 or 1), or
/// beyond what Baton counts (`u32`).
pub fn out_of_range(value: i64, min: u32) -> Option<String> {
    if value < i64::from(min) {
        Some(match min {
            0 => "must be zero or a positive whole number".to_string(),
            _ => format!("must be at least {min}"),
        })
    } else if value > i64::from(u32::MAX) {
        Some(format!("too large: at most {}", u32::MAX))
    } else {
        None
    }
}
