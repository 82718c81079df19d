//! The state of one conversion: where secrets come from, whether files are checked, and every
//! problem found so far with its place.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::env::SecretSource;
use super::problem::{ConfigError, Locator, Place, Problem, invalid};
use super::values;

/// What a section conversion works with: where secrets come from, whether to check the files
/// `serve` will open, and the problems found so far, in the order found.
pub(super) struct Cx<'a> {
    pub(super) env: &'a dyn SecretSource,
    /// `sealgate check-config`: also check, offline, the files and directories `serve` opens.
    pub(super) check_files: bool,
    locator: &'a Locator,
    found: Vec<Problem>,
    /// While converting `[[providers]]` entry N: `providers[N]`, which replaces the `oidc`
    /// at the start of every key recorded (a provider's keys are `[oidc]`'s).
    provider_key: Option<String>,
}

impl<'a> Cx<'a> {
    pub(super) fn new(env: &'a dyn SecretSource, check_files: bool, locator: &'a Locator) -> Self {
        Self {
            env,
            check_files,
            locator,
            found: Vec::new(),
            provider_key: None,
        }
    }

    /// Runs `convert` with every `oidc.…` key it records named `key.…` instead.
    pub(super) fn with_provider_key<T>(
        &mut self,
        key: &str,
        convert: impl FnOnce(&mut Self) -> T,
    ) -> T {
        let outer = self.provider_key.replace(key.to_owned());
        let out = convert(self);
        self.provider_key = outer;
        out
    }

    /// Records `error` at `span` (none: a default value or a missing key).
    pub(super) fn push(&mut self, mut error: ConfigError, span: Option<Range<usize>>) {
        if let Some(prefix) = &self.provider_key {
            let rename = |key: &mut String| {
                if let Some(rest) = key.strip_prefix("oidc")
                    && (rest.is_empty() || rest.starts_with('.'))
                {
                    *key = format!("{prefix}{rest}");
                }
            };
            match &mut error {
                ConfigError::Invalid { key, .. } | ConfigError::Secret { key, .. } => rename(key),
                ConfigError::Parse(message) => rename(message),
                _ => {}
            }
        }
        let place = span.map_or(Place::Unknown, |s| self.locator.place(&s));
        self.found.push(Problem { error, place });
    }

    /// The value, or `None` with the problem recorded at `span`.
    pub(super) fn ok<T>(
        &mut self,
        span: Option<Range<usize>>,
        result: Result<T, ConfigError>,
    ) -> Option<T> {
        result.map_err(|e| self.push(e, span)).ok()
    }

    /// `None`, with `error` recorded at `span`.
    pub(super) fn refuse<T>(
        &mut self,
        span: Option<Range<usize>>,
        error: ConfigError,
    ) -> Option<T> {
        self.push(error, span);
        None
    }

    /// Whether nothing has been found so far.
    pub(super) fn clean(&self) -> bool {
        self.found.is_empty()
    }

    pub(super) fn into_problems(self) -> Vec<Problem> {
        self.found
    }

    /// An optional duration (`"20m"`), `default` when absent.
    pub(super) fn duration(
        &mut self,
        key: &str,
        raw: Option<&Spanned<String>>,
        default: &str,
    ) -> Option<Duration> {
        let text = raw.map_or(default, |r| r.get_ref().as_str());
        self.ok(span(raw), values::duration(key, text))
    }

    /// An optional keyword from `choices` (`default` when absent), mapped to its value.
    pub(super) fn keyword<T: Copy>(
        &mut self,
        key: &str,
        raw: Option<&Spanned<String>>,
        default: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let text = raw.map_or(default, |r| r.get_ref().as_str());
        if let Some((_, value)) = choices.iter().find(|(word, _)| *word == text) {
            return Some(*value);
        }
        let words: Vec<String> = choices.iter().map(|(w, _)| format!("{w:?}")).collect();
        let hint = match words.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        self.push(invalid(key, format!("{text:?}: use {hint}")), span(raw));
        None
    }
}

/// The span of an optional value.
pub(super) fn span<T>(raw: Option<&Spanned<T>>) -> Option<Range<usize>> {
    raw.map(Spanned::span)
}
