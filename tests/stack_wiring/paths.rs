//! What the docs point a reader at exists: every repository path the dashboards' text and
//! README.md name (relative markdown links, backticked paths under the repository's folders) is
//! a file or folder of the repository, and a README section a dashboard names is a heading of it.
//! A dashboard once sent readers to a walkthrough file that was never written.

use std::path::Path;

use serde_json::Value;

use crate::{assert_no_problems, path, read};

const README: &str = "README.md";
/// Where the dashboards and their provisioning live: every JSON file below is read.
const GRAFANA_DIR: &str = "grafana";
/// The repository's folders: a backticked word under one of them names a repository path.
const PATH_ROOTS: &[&str] = &[
    "src/",
    "crates/",
    "docs/",
    "scripts/",
    "tests/",
    "grafana/",
    "otel/",
    "examples/",
    ".ci/",
];

/// Relative link targets of markdown text, `[label](target)`, without their `#anchor`; URLs,
/// absolute paths (Grafana routes such as `/a/grafana-pyroscope-app`) and anchors alone are not
/// repository paths.
fn markdown_links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        // An optional title follows the target after a space: [x](path "title").
        let target = rest[..end].split_whitespace().next().unwrap_or("");
        let target = target.split('#').next().unwrap_or("");
        let external = target.contains(':') || target.starts_with('/');
        if !target.is_empty() && !external {
            out.push(target.to_owned());
        }
        rest = &rest[end..];
    }
    out
}

/// Words of inline code spans that look like repository paths (under one of [`PATH_ROOTS`]).
/// Fenced code blocks are commands and code, not references, and are skipped; so is a code span
/// that is a link's label, whose target [`markdown_links`] checks (the label may be relative to
/// the target's crate).
fn backticked_paths(text: &str) -> Vec<String> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(open) = rest.find('`') {
        let Some(len) = rest[open + 1..].find('`') else {
            break;
        };
        let span = &rest[open + 1..open + 1 + len];
        rest = &rest[open + len + 2..];
        if rest.starts_with("](") {
            continue;
        }
        for word in span.split_whitespace() {
            let word = word
                .trim_start_matches("./")
                .trim_end_matches([',', ';', ':', ')']);
            let pattern = word.contains(['*', '<', '>', '{', '$']);
            if !pattern && PATH_ROOTS.iter().any(|root| word.starts_with(root)) {
                out.push(word.to_owned());
            }
        }
    }
    out
}

/// The README sections a text sends readers to: `README.md ... section *Title*`.
fn readme_sections(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("section *") {
        let mentions_readme = text[..at].rfind(README).is_some_and(|r| at - r < 80);
        let title = &text[at + "section *".len()..];
        if let (true, Some(end)) = (mentions_readme, title.find('*')) {
            out.push(title[..end].to_owned());
        }
    }
    out
}

/// Every string of a JSON document (a dashboard's text panels, descriptions, links).
fn json_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| json_strings(i, out)),
        Value::Object(fields) => fields.values().for_each(|f| json_strings(f, out)),
        _ => {}
    }
}

/// The JSON files under `dir`, repository-relative, recursively.
fn json_files(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(path(dir)).unwrap_or_else(|e| panic!("cannot list {dir}: {e}"));
    for entry in entries {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let rel = format!("{dir}/{name}");
        if path(&rel).is_dir() {
            out.extend(json_files(&rel));
        } else if name.ends_with(".json") {
            out.push(rel);
        }
    }
    out
}

/// The problems of one document: each path it names that is missing, and each README section.
fn check_text(source: &str, text: &str, headings: &[String], problems: &mut Vec<String>) {
    let mut named = markdown_links(text);
    named.extend(backticked_paths(text));
    for rel in named {
        let trimmed = rel.trim_end_matches('/');
        if trimmed.is_empty() || !Path::new(&path(trimmed)).exists() {
            problems.push(format!(
                "{source} names `{rel}`, which is not in the repository"
            ));
        }
    }
    for section in readme_sections(text) {
        if !headings.contains(&section) {
            problems.push(format!(
                "{source} sends readers to the {README} section {section:?}, which it lacks"
            ));
        }
    }
}

/// The README's headings, without their `#`s.
fn headings(readme: &str) -> Vec<String> {
    readme
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim().to_owned())
        .collect()
}

#[test]
fn every_path_the_dashboards_and_readme_name_exists() {
    let readme = read(README);
    let headings = headings(&readme);
    let mut problems = Vec::new();
    check_text(README, &readme, &headings, &mut problems);
    let files = json_files(GRAFANA_DIR);
    assert!(!files.is_empty(), "no JSON under {GRAFANA_DIR}/");
    for file in files {
        let doc: Value = serde_json::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
        let mut strings = Vec::new();
        json_strings(&doc, &mut strings);
        for text in strings {
            check_text(&file, &text, &headings, &mut problems);
        }
    }
    assert_no_problems("paths named by the docs", &problems);
}

/// This module's parsers on known input (part of `parsers_read_what_they_are_given`).
pub(crate) fn read_known_input() {
    let text = "See [the demo](docs/demo.md#run), [web](https://x.org/a), [app](/a/app), \
                [here](#tuning) and [`examples/x.rs`](crates/c/examples/x.rs \"title\").\n\
                Run `RUNS=2 scripts/bench.sh`, read `src/config/`, not `cargo test`.\n\
                ```sh\nscripts/fenced.sh `src/fenced.rs`\n```\n\
                `./otel/tempo.yaml`, `crates/*/src` and `grafana/a.json`:";
    assert_eq!(
        markdown_links(text),
        vec!["docs/demo.md", "crates/c/examples/x.rs"]
    );
    assert_eq!(
        backticked_paths(text),
        vec![
            "scripts/bench.sh",
            "src/config/",
            "otel/tempo.yaml",
            "grafana/a.json"
        ]
    );
    assert_eq!(
        readme_sections("Walkthrough: `README.md`, section *The stack*."),
        vec!["The stack"]
    );
    assert_eq!(
        headings("# a\n## The stack\ntext #x"),
        vec!["a", "The stack"]
    );
}
