//! Values from outside the file: environment overrides (`SEALGATE__SECTION__KEY`) and secret
//! references (`env:NAME`, `file:PATH`).

use std::borrow::Cow;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::problem::{ConfigError, Locator, invalid};
use crate::secret::SecretString;

/// Where secrets come from: the process environment in production, a map in tests.
pub trait SecretSource {
    /// The value of environment variable `name`.
    fn env(&self, name: &str) -> Option<String>;

    /// Whether the value [`SecretSource::env`] gave for `name` stands in for a variable that is
    /// not set (`check-config`): a secret that must parse (a PEM key) is then not parsed.
    fn is_stand_in(&self, _name: &str) -> bool {
        false
    }
}

/// Reads secrets from the real process environment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcessEnv;

impl SecretSource for ProcessEnv {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> SecretSource for F {
    fn env(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Environment variables starting with this override configuration keys.
pub(crate) const ENV_PREFIX: &str = "SEALGATE__";

/// The environment overrides of one run, sorted by name (the order they apply in).
///
/// `SEALGATE__SERVER__LISTEN=0.0.0.0:8080` sets `[server] listen`;
/// `SEALGATE__ROUTES__0__UPSTREAM` sets the first route's `upstream`. Names are the key path in
/// upper case, joined by `__`; array elements by index. A value that parses as a TOML value
/// (`true`, `4096`, `["a", "b"]`, `"x"`) is used as such, anything else as a string. Secrets
/// still go through `env:`/`file:` references. Missing tables are created; an unknown key is an
/// error like any other unknown key.
///
/// The values a variable sets carry a span past the end of the file ([`Locator::variable_span`]),
/// so a problem with one names the variable instead of a line.
pub(super) struct Overrides<'o> {
    vars: Vec<&'o (String, String)>,
    /// `v = <value>`, parsed as a document so that a value reads exactly as in the file.
    docs: Vec<String>,
}

impl<'o> Overrides<'o> {
    pub(super) fn new(overrides: &'o [(String, String)]) -> Self {
        let mut vars: Vec<&(String, String)> = overrides
            .iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        let docs = vars
            .iter()
            .map(|(_, value)| format!("v = {value}"))
            .collect();
        Self { vars, docs }
    }

    /// The variable names, in order (for the [`Locator`]).
    pub(super) fn names(&self) -> Vec<String> {
        self.vars.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Applies every override to `root`. Every problem, each naming its variable.
    pub(super) fn apply<'a>(&'a self, root: &mut DeTable<'a>, text_len: usize) -> Vec<ConfigError>
    where
        'o: 'a,
    {
        let mut problems = Vec::new();
        for (i, (name, value)) in self.vars.iter().enumerate() {
            let span = Locator::variable_span(text_len, i);
            let parsed = DeTable::parse(&self.docs[i])
                .ok()
                .and_then(|doc| doc.into_inner().remove("v"))
                .map_or_else(
                    || DeValue::String(Cow::Borrowed(value.as_str())),
                    Spanned::into_inner,
                );
            if let Err(e) = set(root, name, respan(parsed, &span), &span) {
                problems.push(e);
            }
        }
        problems
    }
}

/// Sets the key path of variable `name` in `root` to `value`.
fn set<'a>(
    root: &mut DeTable<'a>,
    name: &str,
    value: Spanned<DeValue<'a>>,
    span: &Range<usize>,
) -> Result<(), ConfigError> {
    let bad = |problem: &str| invalid(name, problem.to_owned());
    let path = name.strip_prefix(ENV_PREFIX).unwrap_or(name);
    let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if parts.iter().any(String::is_empty) {
        return Err(bad("not a key path (SEALGATE__SECTION__KEY)"));
    }
    let (last, parents) = parts.split_last().ok_or_else(|| bad("empty key path"))?;
    let mut node = root;
    for part in parents {
        if let Ok(index) = part.parse::<usize>() {
            return Err(bad(&format!(
                "an index ({index}) must follow an array name"
            )));
        }
        let next = node
            .entry(key(part, span))
            .or_insert_with(|| Spanned::new(span.clone(), DeValue::Table(DeTable::new())));
        node = match next.get_mut() {
            DeValue::Table(t) => t,
            // SECTION__<index>__KEY: the next part is the index.
            DeValue::Array(items) => return set_in_array(items, &parts, part, value, name, span),
            _ => return Err(bad(&format!("{part} is not a table"))),
        };
    }
    node.insert(key(last, span), value);
    Ok(())
}

/// `SEALGATE__ROUTES__<i>__KEY`: sets `KEY` in element `i` of the array named `array`.
fn set_in_array<'a>(
    items: &mut DeArray<'a>,
    parts: &[String],
    array: &str,
    value: Spanned<DeValue<'a>>,
    name: &str,
    span: &Range<usize>,
) -> Result<(), ConfigError> {
    let bad = |problem: String| invalid(name, problem);
    let at = parts.iter().position(|p| p == array).unwrap_or(0);
    let (Some(index), Some(field), None) =
        (parts.get(at + 1), parts.get(at + 2), parts.get(at + 3))
    else {
        return Err(bad(format!(
            "use {ENV_PREFIX}{}__<index>__<KEY>",
            array.to_ascii_uppercase()
        )));
    };
    let index: usize = index
        .parse()
        .map_err(|_| bad(format!("{index:?} is not an index into [[{array}]]")))?;
    match items.get_mut(index).map(Spanned::get_mut) {
        Some(DeValue::Table(t)) => {
            t.insert(key(field, span), value);
            Ok(())
        }
        _ => Err(bad(format!("[[{array}]] has no element {index}"))),
    }
}

fn key<'a>(name: &str, span: &Range<usize>) -> Spanned<Cow<'a, str>> {
    Spanned::new(span.clone(), Cow::Owned(name.to_owned()))
}

/// `value` with every span inside it replaced by `span` (the variable's).
fn respan<'a>(value: DeValue<'a>, span: &Range<usize>) -> Spanned<DeValue<'a>> {
    let value = match value {
        DeValue::Array(items) => DeValue::Array(
            items
                .into_iter()
                .map(|v| respan(v.into_inner(), span))
                .collect(),
        ),
        DeValue::Table(table) => {
            let mut out = DeTable::new();
            for (k, v) in table {
                out.insert(
                    Spanned::new(span.clone(), k.into_inner()),
                    respan(v.into_inner(), span),
                );
            }
            DeValue::Table(out)
        }
        other => other,
    };
    Spanned::new(span.clone(), value)
}

/// Resolves a secret reference: `env:NAME` or `file:PATH` (trailing newline ignored), never an
/// inline value, so a config file can be committed or printed without leaking anything.
pub(super) fn resolve_secret(
    key: &str,
    spec: &str,
    env: &dyn SecretSource,
) -> Result<SecretString, ConfigError> {
    let secret_err = |problem: String| ConfigError::Secret {
        key: key.to_owned(),
        problem,
    };
    let value = if let Some(name) = spec.strip_prefix("env:") {
        env.env(name)
            .ok_or_else(|| secret_err(format!("environment variable {name} is not set")))?
    } else if let Some(path) = spec.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map_err(|e| secret_err(format!("cannot read {path}: {e}")))?
            .trim_end_matches(['\r', '\n'])
            .to_owned()
    } else {
        return Err(secret_err(
            "secrets must be given as \"env:NAME\" or \"file:PATH\", never inline".into(),
        ));
    };
    if value.is_empty() {
        return Err(secret_err("the secret is empty".into()));
    }
    Ok(SecretString::new(value))
}
