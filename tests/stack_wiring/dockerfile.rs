//! The Dockerfile as stages of instructions, and the checks that the image builds with
//! `--release --locked` from every source it needs, ships every binary and runs the service.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::compose::{COMPOSE_FILE, image_repository, split_tag};
use crate::package::{
    bins, included_files, newest_rust_version_shipped, package_targets, parse_version, rustc_host,
};
use crate::query_syntax::glob_match;
use crate::stack::{DEFAULT_LISTEN_ADDR, Stack};
use crate::{ROOT, assert_no_problems, basename, normalize_rel, read};

pub(crate) const DOCKERFILE: &str = "Dockerfile";
const DOCKERIGNORE: &str = ".dockerignore";

#[derive(Debug, Clone)]
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

pub(crate) struct Stage {
    name: Option<String>,
    pub(crate) image: String,
    instructions: Vec<Instruction>,
}

pub(crate) struct Dockerfile {
    pub(crate) stages: Vec<Stage>,
}

impl Dockerfile {
    pub(crate) fn load() -> Dockerfile {
        Dockerfile::parse(&read(DOCKERFILE))
    }

    fn parse(text: &str) -> Dockerfile {
        let mut instructions = Vec::new();
        let mut pending: Option<(usize, String)> = None;
        for (i, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            if pending.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
                continue;
            }
            if pending.is_some() && trimmed.starts_with('#') {
                continue;
            }
            let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
            if let Some(body) = trimmed.strip_suffix('\\') {
                acc.push_str(body);
                acc.push(' ');
                pending = Some((start, acc));
            } else {
                acc.push_str(trimmed);
                instructions.push((start, acc));
            }
        }
        if let Some(p) = pending {
            instructions.push(p);
        }
        let mut stages: Vec<Stage> = Vec::new();
        for (line, text) in instructions {
            let (keyword, args) = text.split_once(char::is_whitespace).unwrap_or((&text, ""));
            let keyword = keyword.to_ascii_uppercase();
            let args = args.trim().to_owned();
            if keyword == "FROM" {
                let words: Vec<&str> = args
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let name = match words.as_slice() {
                    [_, kw, name] if kw.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                    _ => None,
                };
                stages.push(Stage {
                    name,
                    image: words.first().map(|s| (*s).to_owned()).unwrap_or_default(),
                    instructions: Vec::new(),
                });
            } else if let Some(stage) = stages.last_mut() {
                stage.instructions.push(Instruction {
                    line,
                    keyword,
                    args,
                });
            }
        }
        assert!(!stages.is_empty(), "{DOCKERFILE} has no FROM");
        Dockerfile { stages }
    }

    fn runtime(&self) -> &Stage {
        self.stages.last().unwrap()
    }

    pub(crate) fn stage(&self, name_or_index: &str) -> Option<&Stage> {
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(name_or_index))
            .or_else(|| {
                name_or_index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.stages.get(i))
            })
    }

    fn exec_form(&self, keyword: &str) -> Vec<String> {
        let Some(ins) = self
            .runtime()
            .instructions
            .iter()
            .rev()
            .find(|i| i.keyword == keyword)
        else {
            return Vec::new();
        };
        match serde_json::from_str::<Vec<String>>(&ins.args) {
            Ok(v) => v,
            Err(_) => vec!["/bin/sh".into(), "-c".into(), ins.args.clone()],
        }
    }

    pub(crate) fn entrypoint(&self) -> Vec<String> {
        self.exec_form("ENTRYPOINT")
    }

    pub(crate) fn cmd(&self) -> Vec<String> {
        self.exec_form("CMD")
    }

    /// Files the runtime stage copies from another stage: (stage, source path, path in the image).
    pub(crate) fn copied_from_stages(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for ins in &self.runtime().instructions {
            if ins.keyword != "COPY" && ins.keyword != "ADD" {
                continue;
            }
            let (flags, paths) = copy_args(&ins.args);
            let Some(from) = flags.get("from") else {
                continue;
            };
            let Some((dest, sources)) = paths.split_last() else {
                continue;
            };
            for src in sources {
                let into_dir = dest.ends_with('/') || sources.len() > 1;
                let target = if into_dir {
                    format!("{}/{}", dest.trim_end_matches('/'), basename(src))
                } else {
                    dest.clone()
                };
                out.push((from.clone(), src.clone(), target));
            }
        }
        out
    }

    /// The last `USER` of the runtime stage.
    pub(crate) fn user(&self) -> Option<String> {
        self.runtime()
            .instructions
            .iter()
            .rev()
            .find(|i| i.keyword == "USER")
            .map(|i| i.args.clone())
    }
}

/// `--flag=value` options and the paths of a COPY/ADD (shell or JSON form).
fn copy_args(args: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut flags = BTreeMap::new();
    let mut rest = Vec::new();
    let words: Vec<String> = if args.trim_start().starts_with('[') {
        serde_json::from_str(args).unwrap_or_default()
    } else {
        args.split_whitespace().map(str::to_owned).collect()
    };
    for w in words {
        if let Some(flag) = w.strip_prefix("--") {
            let (k, v) = flag.split_once('=').unwrap_or((flag, ""));
            flags.insert(k.to_owned(), v.to_owned());
        } else {
            rest.push(w);
        }
    }
    (flags, rest)
}

#[test]
fn dockerfile_builds_and_ships_every_binary_of_the_package() {
    let dockerfile = Dockerfile::load();
    let targets = package_targets();
    let bins = bins();
    assert!(!bins.is_empty(), "cargo metadata lists no binaries");
    let mut problems = Vec::new();

    // What the runtime stage copies out of the build stage.
    let copied = dockerfile.copied_from_stages();
    let build_stages = stages_building_bins(&copied, &bins, &mut problems);
    for stage_name in &build_stages {
        let Some(stage) = dockerfile.stage(stage_name) else {
            problems.push(format!("COPY --from={stage_name}: no such stage"));
            continue;
        };
        check_build_stage(stage_name, stage, &targets, &bins, &mut problems);
    }

    // The image runs the service by default, and the binaries it names exist.
    check_commands_run_shipped_binaries(&dockerfile, &copied, &mut problems);
    check_service_port_exposed(&dockerfile, &mut problems);
    assert_no_problems(DOCKERFILE, &problems);
}

/// The stages the runtime stage copies the binaries from: each binary of the package is copied,
/// and from the release build.
fn stages_building_bins(
    copied: &[(String, String, String)],
    bins: &[String],
    problems: &mut Vec<String>,
) -> BTreeSet<String> {
    let mut build_stages = BTreeSet::new();
    for bin in bins {
        let found = copied
            .iter()
            .find(|(_, src, _)| src.ends_with(&format!("/target/release/{bin}")));
        match found {
            Some((stage, _, _)) => {
                build_stages.insert(stage.clone());
            }
            None => problems.push(format!(
                "binary {bin:?} (a [[bin]] of the package) is not copied from target/release/ into \
                 the runtime image"
            )),
        }
    }
    for (stage, src, _) in copied {
        if src.contains("/target/") && !src.contains("/target/release/") {
            problems.push(format!("{src} from stage {stage}: ship the release build"));
        }
    }
    build_stages
}

/// What a build stage has done so far, instruction by instruction.
#[derive(Default)]
struct BuildWalk {
    sources_copied: BTreeSet<String>,
    built_before_sources: bool,
    final_build_line: Option<usize>,
    touched_since_copy: bool,
}

impl BuildWalk {
    fn copy(&mut self, ins: &Instruction) {
        let (_, paths) = copy_args(&ins.args);
        if let Some((_, sources)) = paths.split_last() {
            for s in sources {
                self.sources_copied.insert(normalize_rel(s));
            }
        }
        self.touched_since_copy = false;
    }

    /// A `cargo build` over the sources copied so far: a stub build (sources made up in the RUN
    /// itself) before them, or the real build, which must not ship the stub's binaries.
    fn cargo_build(
        &mut self,
        ins: &Instruction,
        targets: &[(String, String, String)],
        problems: &mut Vec<String>,
    ) {
        let covers = |rel: &str| {
            self.sources_copied
                .iter()
                .any(|s| s == "." || rel == s || rel.starts_with(&format!("{s}/")))
        };
        let built: Vec<&str> = targets
            .iter()
            .filter(|(k, _, _)| matches!(k.as_str(), "lib" | "bin" | "custom-build"))
            .map(|(_, _, rel)| rel.as_str())
            .collect();
        let all_sources = built
            .iter()
            .all(|rel| covers(rel) || ins.args.contains(rel));
        let real_sources = built.iter().all(|rel| covers(rel));
        if real_sources {
            if self.built_before_sources
                && !self.touched_since_copy
                && !ins.args.contains("touch")
                && !ins.args.contains("cargo clean")
            {
                problems.push(format!(
                    "{DOCKERFILE}:{}: a stub build ran before the sources were copied, \
                     and COPY keeps old modification times: touch the sources (or \
                     `cargo clean -p rideshare`) or the stub binaries ship",
                    ins.line
                ));
            }
            self.final_build_line = Some(ins.line);
        } else if all_sources {
            self.built_before_sources = true;
        } else {
            let missing: Vec<&str> = built
                .into_iter()
                .filter(|rel| !covers(rel) && !ins.args.contains(rel))
                .collect();
            problems.push(format!(
                "{DOCKERFILE}:{}: cargo build runs without these target sources: {missing:?}",
                ins.line
            ));
        }
    }
}

/// Every cargo build of a build stage is release, locked, of all binaries, over all the sources,
/// and the stage copies every file the build reads.
fn check_build_stage(
    stage_name: &str,
    stage: &Stage,
    targets: &[(String, String, String)],
    bins: &[String],
    problems: &mut Vec<String>,
) {
    let mut walk = BuildWalk::default();
    for ins in &stage.instructions {
        match ins.keyword.as_str() {
            "COPY" | "ADD" => walk.copy(ins),
            "RUN" if ins.args.contains("cargo build") => {
                check_cargo_build_flags(ins, bins, problems);
                walk.cargo_build(ins, targets, problems);
            }
            "RUN" if ins.args.contains("touch") => walk.touched_since_copy = true,
            _ => {}
        }
    }
    if walk.final_build_line.is_none() {
        problems.push(format!(
            "{DOCKERFILE}: stage {stage_name} never runs `cargo build --release --locked` over \
             the copied sources"
        ));
    }
    let mut needed = vec!["Cargo.toml".to_owned(), "Cargo.lock".to_owned()];
    // Files the sources pull in at compile time (include_str! and friends) must be there too.
    needed.extend(included_files(Path::new(ROOT), "src"));
    for needed in needed {
        let covered = walk
            .sources_copied
            .iter()
            .any(|s| s == "." || *s == needed || needed.starts_with(&format!("{s}/")));
        if !covered {
            problems.push(format!(
                "{DOCKERFILE}: stage {stage_name} does not copy {needed}, which the build needs"
            ));
        }
    }
}

/// Each `cargo build` of a RUN is `--release --locked` and builds every binary.
fn check_cargo_build_flags(ins: &Instruction, bins: &[String], problems: &mut Vec<String>) {
    for cmd in ins.args.split("&&").filter(|c| c.contains("cargo build")) {
        for flag in ["--release", "--locked"] {
            if !cmd.split_whitespace().any(|w| w == flag) {
                problems.push(format!(
                    "{DOCKERFILE}:{}: `{}` lacks {flag}",
                    ins.line,
                    cmd.trim()
                ));
            }
        }
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let limited: Vec<&str> = words
            .windows(2)
            .filter(|w| w[0] == "--bin")
            .map(|w| w[1])
            .collect();
        if !limited.is_empty() || words.contains(&"-p") || words.contains(&"--package") {
            let missing: Vec<&String> = bins
                .iter()
                .filter(|b| !limited.contains(&b.as_str()))
                .collect();
            if !missing.is_empty() || words.contains(&"-p") {
                problems.push(format!(
                    "{DOCKERFILE}:{}: `{}` does not build every binary (missing {missing:?})",
                    ins.line,
                    cmd.trim()
                ));
            }
        }
    }
}

/// The image's default command is the rideshare binary, and every app compose runs from the
/// image names a binary the image has.
fn check_commands_run_shipped_binaries(
    dockerfile: &Dockerfile,
    copied: &[(String, String, String)],
    problems: &mut Vec<String>,
) {
    let in_image: BTreeSet<String> = copied.iter().map(|(_, _, d)| d.clone()).collect();
    let default_cmd: Vec<String> = dockerfile
        .entrypoint()
        .into_iter()
        .chain(dockerfile.cmd())
        .collect();
    match default_cmd.first() {
        Some(p) if basename(p) == "rideshare" && in_image.contains(p) => {}
        other => problems.push(format!(
            "{DOCKERFILE}: the default command must be the rideshare binary the image has \
             ({in_image:?}), is {other:?}"
        )),
    }
    let stack = Stack::load();
    for app in stack.apps() {
        let argv = stack.compose.argv(&app, dockerfile);
        match argv.first() {
            Some(p) if in_image.contains(p) => {}
            other => problems.push(format!(
                "{COMPOSE_FILE}: {app} runs {other:?}, which is not a binary the image has ({in_image:?})"
            )),
        }
    }
}

/// The runtime stage EXPOSEs the service's default port.
fn check_service_port_exposed(dockerfile: &Dockerfile, problems: &mut Vec<String>) {
    let exposed: Vec<u16> = dockerfile
        .runtime()
        .instructions
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|p| p.split('/').next().and_then(|p| p.parse().ok()))
        .collect();
    let default_port: u16 = DEFAULT_LISTEN_ADDR
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    if !exposed.contains(&default_port) {
        problems.push(format!(
            "{DOCKERFILE}: EXPOSE {default_port} (the service's port) is missing"
        ));
    }
}

#[test]
fn dockerfile_builder_is_new_enough_for_the_locked_dependencies() {
    let dockerfile = Dockerfile::load();
    let builder = dockerfile
        .stages
        .iter()
        .find(|s| image_repository(&s.image) == "rust")
        .unwrap_or_else(|| panic!("{DOCKERFILE}: no stage builds FROM the rust image"));
    let tag = split_tag(&builder.image).1.unwrap_or("");
    let version_text = tag.split('-').next().unwrap_or("");
    let have = parse_version(version_text).unwrap_or_else(|| {
        panic!(
            "{DOCKERFILE}: FROM {}: no Rust version in the tag",
            builder.image
        )
    });
    // The normal and build dependencies of the package, for the platform the image builds on.
    let needed = newest_rust_version_shipped(&rustc_host());
    assert!(
        have >= needed.0,
        "{DOCKERFILE}: FROM {} has Rust {have:?}, but {} needs {:?}: `cargo build --locked` would \
         fail in the image",
        builder.image,
        needed.1,
        needed.0
    );
}

#[test]
fn dockerignore_keeps_build_output_out_and_sources_in() {
    let ignore = read(DOCKERIGNORE);
    let patterns: Vec<String> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .map(normalize_rel)
        .map(|l| l.trim_start_matches('/').to_owned())
        .collect();
    let mut problems = Vec::new();
    for must in ["target", ".git", "rideshare-report"] {
        if !patterns.iter().any(|p| p == must) {
            problems.push(format!(
                "{must} is not ignored: it would be sent as build context"
            ));
        }
    }
    // Whatever the Dockerfile copies from the context must not be ignored.
    let dockerfile = Dockerfile::load();
    for stage in &dockerfile.stages {
        for ins in stage.instructions.iter().filter(|i| i.keyword == "COPY") {
            let (flags, paths) = copy_args(&ins.args);
            if flags.contains_key("from") {
                continue;
            }
            let Some((_, sources)) = paths.split_last() else {
                continue;
            };
            for src in sources.iter().map(|s| normalize_rel(s)) {
                for p in &patterns {
                    if glob_match(p, &src) || src.starts_with(&format!("{p}/")) {
                        problems.push(format!(
                            "pattern {p:?} ignores {src:?}, which {DOCKERFILE}:{} copies",
                            ins.line
                        ));
                    }
                }
            }
        }
    }
    assert_no_problems(DOCKERIGNORE, &problems);
}

/// This module's parser on known input (part of `parsers_read_what_they_are_given`).
pub(crate) fn read_known_input() {
    let d = Dockerfile::parse(
        "FROM rust:1 AS b\nRUN a \\\n  && b\nFROM debian:12\nCOPY --from=b /x/target/release/one /x/target/release/two /usr/local/bin/\nUSER 1:1\nCMD [\"/usr/local/bin/one\"]\n",
    );
    assert_eq!(d.stages.len(), 2);
    assert_eq!(d.stages[0].instructions[0].args, "a  && b");
    assert_eq!(
        d.copied_from_stages()
            .into_iter()
            .map(|(_, _, dest)| dest)
            .collect::<Vec<_>>(),
        vec!["/usr/local/bin/one", "/usr/local/bin/two"]
    );
    assert_eq!(d.cmd(), vec!["/usr/local/bin/one"]);
    assert_eq!(d.user().as_deref(), Some("1:1"));
}
