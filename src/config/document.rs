//! From text to raw tables: parse the TOML once with its spans, apply the environment
//! overrides, then deserialize each table on its own so that a mistake in one (an unknown key,
//! a value of the wrong type) does not hide the problems of the others.

use std::collections::HashMap;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::context::Cx;
use super::env::Overrides;
use super::problem::ConfigError;
use super::raw::{
    self, RawBff, RawCluster, RawLimits, RawLog, RawMetrics, RawOidc, RawRevocation, RawRoute,
    RawServer, RawSession, RawStatic,
};

/// The tables of the file. `None` for a table that is missing or was refused (the problem is
/// recorded); tables with defaults are `Some` when absent.
pub(super) struct RawConfig {
    pub server: Option<RawServer>,
    pub oidc: Option<RawOidc>,
    /// Each `[[providers]]` entry that could be read, with its index in the file.
    pub providers: Vec<(usize, RawOidc)>,
    /// Whether the file has `[[providers]]` (even if no entry could be read).
    pub has_providers: bool,
    pub session: Option<RawSession>,
    pub bff: Option<RawBff>,
    /// Each `[[routes]]` entry that could be read, with its index in the file.
    pub routes: Vec<(usize, RawRoute)>,
    pub static_files: Option<RawStatic>,
    pub revocation: Option<RawRevocation>,
    pub cluster: Option<RawCluster>,
    pub metrics: Option<RawMetrics>,
    pub log: Option<RawLog>,
    pub limits: Option<RawLimits>,
    /// Where each key's value is (`server.listen`, `routes[1].prefix`), for warnings.
    pub places: HashMap<String, Range<usize>>,
}

/// The top-level tables, in the order serde would name them.
const SECTIONS: &[&str] = &[
    "server",
    "oidc",
    "providers",
    "session",
    "bff",
    "routes",
    "static",
    "revocation",
    "cluster",
    "metrics",
    "log",
    "limits",
];

/// Keys whose values may be secrets (a reference, or a secret pasted inline by mistake).
const SECRETS: &[&str] = &[
    "session.keys",
    "oidc.client_secret",
    "oidc.client_assertion_key",
    "cluster.redis_url",
    "cluster.password",
    "cluster.sentinel_password",
];

/// Reads `text` with `overrides` applied. `None` when the file is not TOML or an override
/// cannot be applied: past those, the file's structure is not known.
pub(super) fn read(text: &str, overrides: &Overrides<'_>, cx: &mut Cx<'_>) -> Option<RawConfig> {
    let mut root = match DeTable::parse(text) {
        Ok(root) => root.into_inner(),
        Err(e) => {
            // The message shows the line and column itself.
            cx.push(ConfigError::Parse(e.to_string()), None);
            return None;
        }
    };
    let refused = overrides.apply(&mut root, text.len());
    if !refused.is_empty() {
        for e in refused {
            cx.push(e, None);
        }
        return None;
    }
    let mut raw = RawConfig {
        server: None,
        oidc: None,
        providers: Vec::new(),
        has_providers: false,
        session: None,
        bff: Some(RawBff::default()),
        routes: Vec::new(),
        static_files: None,
        revocation: Some(RawRevocation::default()),
        cluster: None,
        metrics: Some(RawMetrics::default()),
        log: Some(RawLog::default()),
        limits: Some(RawLimits::default()),
        places: places(&root),
    };
    let mut seen = Vec::new();
    // In key order, as serde would visit them.
    for (key, value) in root {
        let name = key.get_ref().as_ref();
        match name {
            "server" => raw.server = table(name, value, cx),
            "oidc" => raw.oidc = table(name, value, cx),
            "session" => raw.session = table(name, value, cx),
            "bff" => raw.bff = table(name, value, cx),
            "providers" => {
                raw.has_providers = true;
                raw.providers = array_of_tables(name, value, cx);
            }
            "routes" => raw.routes = array_of_tables(name, value, cx),
            "static" => raw.static_files = table(name, value, cx),
            "revocation" => raw.revocation = table(name, value, cx),
            "cluster" => raw.cluster = table(name, value, cx),
            "metrics" => raw.metrics = table(name, value, cx),
            "log" => raw.log = table(name, value, cx),
            "limits" => raw.limits = table(name, value, cx),
            other => {
                let problem = unknown_field(other, SECTIONS);
                cx.push(ConfigError::Parse(problem), Some(key.span()));
            }
        }
        seen.push(name.to_owned());
    }
    for required in ["server", "session"] {
        if !seen.iter().any(|s| s == required) {
            cx.push(
                ConfigError::Parse(format!("missing field `{required}`")),
                None,
            );
        }
    }
    match (
        seen.iter().any(|s| s == "oidc"),
        seen.iter().any(|s| s == "providers"),
    ) {
        (false, false) => cx.push(
            ConfigError::Parse("missing field `oidc` (or `[[providers]]`)".into()),
            None,
        ),
        (true, true) => cx.push(
            ConfigError::Parse(
                "`[oidc]` and `[[providers]]` together: use one (a lone [oidc] is one provider)"
                    .into(),
            ),
            None,
        ),
        _ => {}
    }
    Some(raw)
}

/// Deserializes one table. Unknown keys are reported one by one and set aside, so the rest of
/// the table is still checked; any other problem names its path and keeps its span.
fn table<T: DeserializeOwned>(
    path: &str,
    mut value: Spanned<DeValue<'_>>,
    cx: &mut Cx<'_>,
) -> Option<T> {
    let span = value.span();
    let fields = raw::field_names::<T>();
    if let DeValue::Table(table) = value.get_mut() {
        let unknown: Vec<_> = table
            .keys()
            .filter(|k| !fields.contains(&k.get_ref().as_ref()))
            .cloned()
            .collect();
        for key in unknown {
            let problem = format!("{path}: {}", unknown_field(key.get_ref(), fields));
            cx.push(ConfigError::Parse(problem), Some(key.span()));
            table.remove(key.get_ref().as_ref());
        }
    }
    match T::deserialize(ValueDeserializer::from(value)) {
        // With unknown keys set aside, the rest is still converted (and checked); the
        // problems recorded keep the settings from being built.
        Ok(raw) => Some(raw),
        Err(e) => {
            // Without the input, toml's message is the problem, then "in `key`" for a nested
            // key: the key joins the path.
            let text = e.to_string();
            let mut lines: Vec<&str> = text.trim_end().lines().collect();
            let inner = lines
                .last()
                .and_then(|l| l.strip_prefix("in `")?.strip_suffix('`'));
            let path = match inner {
                Some(key) => {
                    let path = format!("{path}.{key}");
                    lines.pop();
                    path
                }
                None => path.to_owned(),
            };
            let message = lines.join(" ");
            let problem = if SECRETS.iter().any(|k| secret_path(&path).starts_with(k)) {
                // serde quotes the value it refused: never a secret given inline by mistake.
                let expected = message.split_once(", expected ").map(|(_, e)| e);
                format!(
                    "{path}: invalid type, expected {}",
                    expected.unwrap_or("a reference like \"env:NAME\"")
                )
            } else {
                format!("{path}: {message}")
            };
            cx.push(ConfigError::Parse(problem), Some(e.span().unwrap_or(span)));
            None
        }
    }
}

/// `path` with a `providers[N]` prefix read as `oidc` (a provider's keys are `[oidc]`'s).
fn secret_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path
        .strip_prefix("providers[")
        .and_then(|rest| rest.split_once(']'))
    {
        Some((index, rest)) if index.bytes().all(|b| b.is_ascii_digit()) => {
            format!("oidc{rest}").into()
        }
        _ => path.into(),
    }
}

/// serde's wording for an unknown key.
fn unknown_field(key: &str, expected: &[&str]) -> String {
    let names: Vec<String> = expected.iter().map(|f| format!("`{f}`")).collect();
    match names.as_slice() {
        [] => format!("unknown field `{key}`, there are no fields"),
        [one] => format!("unknown field `{key}`, expected {one}"),
        _ => format!(
            "unknown field `{key}`, expected one of {}",
            names.join(", ")
        ),
    }
}

/// `[[routes]]` or `[[providers]]`, each entry on its own.
fn array_of_tables<T: DeserializeOwned>(
    name: &str,
    value: Spanned<DeValue<'_>>,
    cx: &mut Cx<'_>,
) -> Vec<(usize, T)> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        cx.push(
            ConfigError::Parse(format!("{name}: expected an array of tables ([[{name}]])")),
            Some(span),
        );
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| Some((i, table(&format!("{name}[{i}]"), item, cx)?)))
        .collect()
}

/// The span of every key's value, by dotted key.
fn places(root: &DeTable<'_>) -> HashMap<String, Range<usize>> {
    let mut places = HashMap::new();
    let mut add = |prefix: String, table: &DeTable<'_>| {
        for (key, value) in table {
            places.insert(format!("{prefix}.{key}"), value.span());
        }
    };
    for (section, value) in root {
        match value.get_ref() {
            DeValue::Table(table) => add(section.to_string(), table),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(table) = item.get_ref() {
                        add(format!("{section}[{i}]"), table);
                    }
                }
            }
            _ => {}
        }
    }
    places
}
