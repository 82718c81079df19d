//! Configuration problems, where they are, and the context every section conversion collects
//! them in.
//!
//! A conversion never stops at the first problem: it records it with the span `toml` gave the
//! value and carries on, so one pass over the file finds every problem, each once.

use std::fmt;
use std::ops::Range;

use crate::seal::{KeyError, NameError};

/// A configuration problem, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("config: {0}")]
    Parse(String),
    /// A value that parses but is not acceptable.
    #[error("config: {key}: {problem}")]
    Invalid {
        /// The dotted key, e.g. `oidc.issuer`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A secret reference that could not be resolved.
    #[error("config: {key}: {problem}")]
    Secret {
        /// The dotted key.
        key: String,
        /// What is wrong (never the secret itself).
        problem: String,
    },
    /// A session key problem (which key, which problem).
    #[error("config: session.keys: {0}")]
    Key(#[from] KeyError),
    /// A bad cookie name.
    #[error("config: session.cookie_name: {0}")]
    CookieName(#[from] NameError),
}

impl ConfigError {
    /// The dotted key the problem is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } | Self::Secret { key, .. } => Some(key),
            Self::Key(_) => Some("session.keys"),
            Self::CookieName(_) => Some("session.cookie_name"),
            Self::Read { .. } | Self::Parse(_) => None,
        }
    }
}

pub(super) fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A 1-based line of the file.
    Line(usize),
    /// An environment override (`SEALGATE__SECTION__KEY`), by name.
    Variable(String),
    /// Nowhere in particular: a default, or a key that is missing.
    Unknown,
}

impl fmt::Display for Place {
    /// The suffix `sealgate check-config` prints after a problem: ` (line 12)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(line) => write!(f, " (line {line})"),
            Self::Variable(name) => write!(f, " (from {name})"),
            Self::Unknown => Ok(()),
        }
    }
}

/// One problem and where it is.
#[derive(Debug)]
pub struct Problem {
    /// What is wrong, naming the key.
    pub error: ConfigError,
    /// Where the offending value is.
    pub place: Place,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.error, self.place)
    }
}

/// Turns `toml` spans into places. Values set by environment overrides carry spans past the end
/// of the file, one position per variable (see [`super::env::Overrides`]), so one span type
/// locates both.
#[derive(Debug)]
pub(super) struct Locator {
    /// Byte offset of the start of each line of the file.
    line_starts: Vec<usize>,
    len: usize,
    variables: Vec<String>,
}

impl Locator {
    pub(super) fn new(text: &str, variables: Vec<String>) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            line_starts,
            len: text.len(),
            variables,
        }
    }

    /// The span standing for the `i`th environment override.
    pub(super) fn variable_span(text_len: usize, i: usize) -> Range<usize> {
        let at = text_len + 1 + i;
        at..at
    }

    pub(super) fn place(&self, span: &Range<usize>) -> Place {
        if span.start > self.len {
            return self
                .variables
                .get(span.start - self.len - 1)
                .map_or(Place::Unknown, |name| Place::Variable(name.clone()));
        }
        // The number of lines starting at or before the span is its 1-based line.
        Place::Line(self.line_starts.partition_point(|&s| s <= span.start))
    }
}
