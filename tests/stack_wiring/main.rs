//! The docker compose stack, proven by reading it: no image can be pulled or run here, so every
//! check is about what the files say. Each test collects every problem it finds and fails with all
//! of them, each naming the file, the service and what is wrong.
//!
//! What is checked, by module:
//! - `compose`: docker-compose.yml is valid against the Compose Specification schema, image tags
//!   are pinned, no container runs as root;
//! - `stack`: every hostname:port an app is configured with names a compose service and a port
//!   that service listens on, with the protocol that port speaks (OTLP gRPC 4317 / HTTP 4318 from
//!   otel/tempo.yaml, read by `tempo`; Pyroscope 4040; the rideshare listen address); health
//!   checks, start order, published ports bound to 127.0.0.1;
//! - `grafana`: the data sources reach their backends, the Tempo data source links spans to
//!   profiles the service really pushes, anonymous users are Viewers, the Profiles Drilldown app
//!   is installed in the background (never synchronously), no removed feature toggle is named,
//!   and the dashboard only asks for labels and values the service emits (its query languages
//!   parsed by `query_syntax`);
//! - `paths`: every repository path the dashboards and README.md name exists;
//! - `dockerfile`: the image builds with `--release --locked` and ships every binary of the
//!   package (as `package` reads it from cargo metadata); .dockerignore keeps the sources in.

mod compose;
mod dockerfile;
mod grafana;
mod package;
mod parsers;
mod paths;
mod query_syntax;
mod stack;
mod tempo;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub(crate) const ROOT: &str = env!("CARGO_MANIFEST_DIR");

// ---------------------------------------------------------------------------------------------
// Reading files

pub(crate) fn path(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

pub(crate) fn read(rel: &str) -> String {
    let p = path(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// A YAML file as JSON values, with `<<` merge keys applied as docker compose applies them.
pub(crate) fn yaml(rel: &str) -> Value {
    let mut v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"));
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{rel}: bad `<<` merge key: {e}"));
    serde_json::to_value(&v).unwrap_or_else(|e| panic!("{rel}: cannot be read as JSON data: {e}"))
}

pub(crate) fn json(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
}

/// Fails with every problem found, one a line.
pub(crate) fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

// ---------------------------------------------------------------------------------------------
// Values and paths

pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn normalize_rel(p: &str) -> String {
    p.trim_start_matches("./").trim_end_matches('/').to_owned()
}

pub(crate) fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}
