//! The package as cargo sees it (its targets, the files they include, the `rust-version` of what
//! ships), for the Dockerfile checks: the image must build all of it, with a new enough Rust.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::ROOT;

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(ROOT);
    cmd
}

fn cargo_metadata(args: &[&str]) -> Value {
    let out = cargo()
        .args(["metadata", "--format-version", "1"])
        .args(args)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// The package's own targets: (kind, name, source path relative to the package root).
pub(crate) fn package_targets() -> Vec<(String, String, String)> {
    let meta = cargo_metadata(&["--no-deps"]);
    let pkg = meta["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "rideshare"))
        .expect("cargo metadata lists the rideshare package");
    let root = Path::new(pkg["manifest_path"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    pkg["targets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            let src = Path::new(t["src_path"].as_str().unwrap());
            let rel = src
                .strip_prefix(&root)
                .unwrap_or(src)
                .to_string_lossy()
                .into_owned();
            let name = t["name"].as_str().unwrap().to_owned();
            t["kind"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |k| (k.as_str().unwrap().to_owned(), name.clone(), rel.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub(crate) fn bins() -> Vec<String> {
    package_targets()
        .into_iter()
        .filter(|(kind, _, _)| kind == "bin")
        .map(|(_, name, _)| name)
        .collect()
}

pub(crate) fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>());
    let major = it.next()?.ok()?;
    let minor = it.next().unwrap_or(Ok(0)).ok()?;
    let patch = it.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

/// The platform rustc builds for by default (x86_64 Linux if rustc does not say).
pub(crate) fn rustc_host() -> String {
    Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        })
        .unwrap_or_else(|| "x86_64-unknown-linux-gnu".into())
}

/// The highest `rust-version` among the package and its normal and build dependencies (what
/// ships, not dev-dependencies) on `host`, locked, and the package that asks for it.
pub(crate) fn newest_rust_version_shipped(host: &str) -> ((u32, u32, u32), String) {
    let meta = cargo_metadata(&["--locked", "--filter-platform", host]);
    let packages: BTreeMap<&str, &Value> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p))
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = meta["resolve"]["root"].as_str().expect("resolve root");
    let mut todo = vec![root];
    let mut seen = BTreeSet::new();
    let mut needed = ((0, 0, 0), String::from("nothing"));
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        let pkg = packages[id];
        if let Some(v) = pkg["rust_version"].as_str().and_then(parse_version) {
            if v > needed.0 {
                needed = (v, format!("{} {}", pkg["name"], pkg["version"]));
            }
        }
        for dep in nodes[id]["deps"].as_array().into_iter().flatten() {
            let shipped = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            if shipped {
                todo.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    needed
}

/// Repository-relative paths of the files `include_str!`/`include_bytes!` pull into the sources
/// under `dir` (relative paths only, as the compiler resolves them: from the including file).
pub(crate) fn included_files(root: &Path, dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![root.join(dir)];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                todo.push(p);
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for mac in ["include_str!(\"", "include_bytes!(\""] {
                for (at, _) in text.match_indices(mac) {
                    let rest = &text[at + mac.len()..];
                    let Some(end) = rest.find('"') else { continue };
                    let mut resolved = p.parent().unwrap().to_path_buf();
                    for part in Path::new(&rest[..end]).components() {
                        match part {
                            std::path::Component::ParentDir => {
                                resolved.pop();
                            }
                            std::path::Component::Normal(n) => resolved.push(n),
                            _ => {}
                        }
                    }
                    if let Ok(rel) = resolved.strip_prefix(root) {
                        out.push(rel.to_string_lossy().into_owned());
                    }
                }
            }
        }
    }
    out
}

/// `included_files` on known input (part of `parsers_read_what_they_are_given`).
pub(crate) fn read_known_input() {
    let tmp = std::env::temp_dir().join(format!("stack_wiring_{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("src/a")).unwrap();
    std::fs::write(
        tmp.join("src/a/b.rs"),
        "#![doc = include_str!(\"../../README.md\")]\nconst X: &[u8] = include_bytes!(\"x.bin\");\n",
    )
    .unwrap();
    let mut found = included_files(&tmp, "src");
    found.sort();
    std::fs::remove_dir_all(&tmp).unwrap();
    assert_eq!(found, vec!["README.md", "src/a/x.bin"]);
}
