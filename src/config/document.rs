//! From text to raw tables: parse the TOML once with its spans, apply the environment
//! overrides, then deserialize each table on its own so that a mistake in one (an unknown key,
//! a value of the wrong type) does not hide the problems of the others.

use std::collections::HashMap;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::env::Overrides;
use super::problem::{ConfigError, Cx};
use super::raw::{
    RawBff, RawCluster, RawLog, RawMetrics, RawOidc, RawRevocation, RawRoute, RawServer,
    RawSession, RawStatic,
};

/// The tables of the file. `None` for a table that is missing or was refused (the problem is
/// recorded); tables with defaults are `Some` when absent.
pub(super) struct RawConfig {
    pub server: Option<RawServer>,
    pub oidc: Option<RawOidc>,
    pub session: Option<RawSession>,
    pub bff: Option<RawBff>,
    /// Each `[[routes]]` entry that could be read, with its index in the file.
    pub routes: Vec<(usize, RawRoute)>,
    pub static_files: Option<RawStatic>,
    pub revocation: Option<RawRevocation>,
    pub cluster: Option<RawCluster>,
    pub metrics: Option<RawMetrics>,
    pub log: Option<RawLog>,
    /// Where each key's value is (`server.listen`, `routes[1].prefix`), for warnings.
    pub places: HashMap<String, Range<usize>>,
}

/// The top-level tables, in the order serde would name them.
const SECTIONS: &[&str] = &[
    "server",
    "oidc",
    "session",
    "bff",
    "routes",
    "static",
    "revocation",
    "cluster",
    "metrics",
    "log",
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
        session: None,
        bff: Some(RawBff::default()),
        routes: Vec::new(),
        static_files: None,
        revocation: Some(RawRevocation::default()),
        cluster: None,
        metrics: Some(RawMetrics::default()),
        log: Some(RawLog::default()),
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
            "routes" => raw.routes = routes(value, cx),
            "static" => raw.static_files = table(name, value, cx),
            "revocation" => raw.revocation = table(name, value, cx),
            "cluster" => raw.cluster = table(name, value, cx),
            "metrics" => raw.metrics = table(name, value, cx),
            "log" => raw.log = table(name, value, cx),
            other => {
                let expected: Vec<String> = SECTIONS.iter().map(|s| format!("`{s}`")).collect();
                let problem = format!(
                    "unknown field `{other}`, expected one of {}",
                    expected.join(", ")
                );
                cx.push(ConfigError::Parse(problem), Some(key.span()));
            }
        }
        seen.push(name.to_owned());
    }
    for required in ["server", "oidc", "session"] {
        if !seen.iter().any(|s| s == required) {
            cx.push(
                ConfigError::Parse(format!("missing field `{required}`")),
                None,
            );
        }
    }
    Some(raw)
}

/// Deserializes one table; a problem names its path and keeps the span `toml` gave it.
fn table<T: DeserializeOwned>(
    path: &str,
    value: Spanned<DeValue<'_>>,
    cx: &mut Cx<'_>,
) -> Option<T> {
    let span = value.span();
    T::deserialize(ValueDeserializer::from(value))
        .map_err(|e| {
            // Without the input, the message is the problem and, for a nested key, "in `key`".
            let message = e.to_string().trim_end().replace('\n', " ");
            cx.push(
                ConfigError::Parse(format!("{path}: {message}")),
                Some(e.span().unwrap_or(span)),
            );
        })
        .ok()
}

/// `[[routes]]`, each entry on its own.
fn routes(value: Spanned<DeValue<'_>>, cx: &mut Cx<'_>) -> Vec<(usize, RawRoute)> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        cx.push(
            ConfigError::Parse("routes: expected an array of tables ([[routes]])".into()),
            Some(span),
        );
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| Some((i, table(&format!("routes[{i}]"), item, cx)?)))
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
