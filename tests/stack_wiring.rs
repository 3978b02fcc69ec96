//! The docker compose stack, proven by reading it: no image can be pulled or run here, so every
//! check below is about what the files say. Each test collects every problem it finds and fails
//! with all of them, each naming the file, the service and what is wrong.
//!
//! What is checked:
//! - docker-compose.yml is valid against the Compose Specification schema;
//! - every hostname:port an app is configured with names a compose service and a port that service
//!   listens on, with the protocol that port speaks (OTLP gRPC 4317 / HTTP 4318 from
//!   otel/tempo.yaml, Pyroscope 4040, the rideshare listen address);
//! - Grafana's data sources reach their backends, the Tempo data source links spans to profiles
//!   the service really pushes, and the dashboard only asks for labels and values the service emits;
//! - image tags are pinned, published ports are bound to 127.0.0.1, no container runs as root,
//!   Grafana's anonymous users are Viewers;
//! - the Dockerfile builds, with `--release --locked`, and ships every binary of the package.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const COMPOSE_FILE: &str = "docker-compose.yml";
const TEMPO_CONFIG: &str = "otel/tempo.yaml";
const DATASOURCES: &str = "grafana/provisioning/datasources/datasources.yaml";
const DASHBOARD_PROVIDERS: &str = "grafana/provisioning/dashboards/dashboards.yaml";
const DASHBOARD: &str = "grafana/dashboards/rideshare.json";
const DOCKERFILE: &str = "Dockerfile";
const DOCKERIGNORE: &str = ".dockerignore";
/// In CI the repository is cloned with `shared/` beside it.
const COMPOSE_SCHEMA: &str = "../shared/schemas/compose-spec.json";

/// The Pyroscope label the Grafana trace-to-profile link selects the service by.
const PYROSCOPE_SERVICE_LABEL: &str = "service_name";
/// The trace resource attribute that names the service.
const SERVICE_NAME_ATTRIBUTE: &str = "service.name";
/// The rideshare service's default listen address (`RIDESHARE_LISTEN_ADDR`).
const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:5000";
/// What `rideshare healthcheck` asks when given no `--url`.
const DEFAULT_HEALTHCHECK_URL: &str = "http://127.0.0.1:5000/";
/// Pyroscope's HTTP port unless `-server.http-listen-port` says otherwise.
const PYROSCOPE_DEFAULT_PORT: u16 = 4040;
/// Grafana's HTTP port unless `GF_SERVER_HTTP_PORT` says otherwise.
const GRAFANA_DEFAULT_PORT: u16 = 3000;

// ---------------------------------------------------------------------------------------------
// Reading files

fn path(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

fn read(rel: &str) -> String {
    let p = path(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// A YAML file as JSON values, with `<<` merge keys applied as docker compose applies them.
fn yaml(rel: &str) -> Value {
    let mut v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"));
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{rel}: bad `<<` merge key: {e}"));
    serde_json::to_value(&v).unwrap_or_else(|e| panic!("{rel}: cannot be read as JSON data: {e}"))
}

fn json(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
}

/// Fails with every problem found, one a line.
fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The compose file

struct Compose {
    doc: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Speaks {
    /// The rideshare HTTP API.
    Rideshare,
    Pyroscope,
    /// Tempo's query API (Grafana's data source).
    TempoApi,
    OtlpGrpc,
    OtlpHttp,
    Grafana,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Region,
    LoadGenerator,
    Pyroscope,
    Tempo,
    Grafana,
}

#[derive(Debug)]
struct PortMapping {
    raw: String,
    host_ip: Option<String>,
    target: Option<u16>,
}

impl Compose {
    fn load() -> Compose {
        Compose {
            doc: yaml(COMPOSE_FILE),
        }
    }

    fn services(&self) -> BTreeMap<String, &Value> {
        self.doc["services"]
            .as_object()
            .unwrap_or_else(|| panic!("{COMPOSE_FILE} has no `services` mapping"))
            .iter()
            .map(|(k, v)| (k.clone(), v))
            .collect()
    }

    fn service(&self, name: &str) -> &Value {
        self.doc["services"]
            .get(name)
            .unwrap_or_else(|| panic!("{COMPOSE_FILE} has no service {name:?}"))
    }

    fn env(&self, name: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match self.service(name).get("environment") {
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    out.insert(k.clone(), scalar(v).unwrap_or_default());
                }
            }
            Some(Value::Array(items)) => {
                for item in items.iter().filter_map(Value::as_str) {
                    let (k, v) = item.split_once('=').unwrap_or((item, ""));
                    out.insert(k.to_owned(), v.to_owned());
                }
            }
            _ => {}
        }
        out
    }

    fn image(&self, name: &str) -> Option<String> {
        self.service(name).get("image").and_then(scalar)
    }

    fn is_built(&self, name: &str) -> bool {
        self.service(name).get("build").is_some()
    }

    /// The program and arguments the container runs: compose's entrypoint/command over the
    /// Dockerfile's ENTRYPOINT/CMD.
    fn argv(&self, name: &str, dockerfile: &Dockerfile) -> Vec<String> {
        let svc = self.service(name);
        let (entrypoint, cmd) = if self.is_built(name) {
            (dockerfile.entrypoint(), dockerfile.cmd())
        } else {
            (Vec::new(), Vec::new())
        };
        let entrypoint = match svc.get("entrypoint") {
            Some(v) => strings(Some(v)),
            None => entrypoint,
        };
        let cmd = match svc.get("command") {
            Some(v) => strings(Some(v)),
            None => cmd,
        };
        entrypoint.into_iter().chain(cmd).collect()
    }

    fn role(&self, name: &str, dockerfile: &Dockerfile) -> Role {
        if self.is_built(name) {
            let argv = self.argv(name, dockerfile);
            let program = argv.first().map(|p| basename(p).to_owned());
            return match program.as_deref() {
                Some("rideshare") => Role::Region,
                Some("loadgen") => Role::LoadGenerator,
                other => panic!(
                    "{COMPOSE_FILE}: service {name} builds the rideshare image but runs {other:?}, \
                     neither `rideshare` nor `loadgen`"
                ),
            };
        }
        let image = self.image(name).unwrap_or_default();
        match image_repository(&image).as_str() {
            "grafana/pyroscope" => Role::Pyroscope,
            "grafana/tempo" => Role::Tempo,
            "grafana/grafana" => Role::Grafana,
            other => panic!(
                "{COMPOSE_FILE}: service {name} runs image {other:?}, which this test does not know: \
                 say in tests/stack_wiring.rs which ports it listens on and as which user it runs"
            ),
        }
    }

    fn ports(&self, name: &str) -> Vec<PortMapping> {
        let Some(Value::Array(items)) = self.service(name).get("ports") else {
            return Vec::new();
        };
        items.iter().map(parse_port_mapping).collect()
    }

    /// (host source, container target) of the service's bind mounts and volumes.
    fn volumes(&self, name: &str) -> Vec<(String, String)> {
        let Some(Value::Array(items)) = self.service(name).get("volumes") else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => {
                    let mut parts = s.split(':');
                    let src = parts.next()?.to_owned();
                    let dst = parts.next()?.to_owned();
                    Some((src, dst))
                }
                Value::Object(m) => Some((
                    m.get("source").and_then(scalar).unwrap_or_default(),
                    m.get("target").and_then(scalar)?,
                )),
                _ => None,
            })
            .collect()
    }

    /// Where the repository file or directory `rel` is mounted in the service, if it is.
    fn mount_target(&self, name: &str, rel: &str) -> Option<String> {
        self.volumes(name)
            .into_iter()
            .find(|(src, _)| normalize_rel(src) == normalize_rel(rel))
            .map(|(_, dst)| dst)
    }
}

fn normalize_rel(p: &str) -> String {
    p.trim_start_matches("./").trim_end_matches('/').to_owned()
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn parse_port_mapping(v: &Value) -> PortMapping {
    match v {
        Value::Object(m) => PortMapping {
            raw: v.to_string(),
            host_ip: m.get("host_ip").and_then(scalar),
            target: m
                .get("target")
                .and_then(scalar)
                .and_then(|t| t.parse().ok()),
        },
        other => {
            let raw = scalar(other).unwrap_or_default();
            let spec = raw.split('/').next().unwrap_or("");
            // [host_ip:][published:]target, host_ip possibly an [IPv6] literal.
            let (host_ip, rest) = if let Some(stripped) = spec.strip_prefix('[') {
                let (ip, rest) = stripped.split_once("]:").unwrap_or((stripped, ""));
                (Some(ip.to_owned()), rest.to_owned())
            } else {
                let parts: Vec<&str> = spec.split(':').collect();
                if parts.len() == 3 {
                    (Some(parts[0].to_owned()), parts[1..].join(":"))
                } else {
                    (None, spec.to_owned())
                }
            };
            let target = rest.rsplit(':').next().and_then(|t| t.parse().ok());
            PortMapping {
                raw,
                host_ip,
                target,
            }
        }
    }
}

/// `grafana/tempo:2.10.8` -> `grafana/tempo`; `docker.io/grafana/tempo@sha256:..` likewise.
fn image_repository(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let (repo, _) = split_tag(no_digest);
    repo.trim_start_matches("docker.io/").to_owned()
}

/// Splits `name:tag` where the tag is after the last `/` (a registry may have a `:port`).
fn split_tag(image: &str) -> (&str, Option<&str>) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], Some(&image[slash + i + 1..])),
        None => (image, None),
    }
}

// ---------------------------------------------------------------------------------------------
// The stack as a network: who listens where, speaking what

struct Stack {
    compose: Compose,
    dockerfile: Dockerfile,
    roles: BTreeMap<String, Role>,
    /// service -> port -> protocol spoken there.
    listeners: BTreeMap<String, BTreeMap<u16, Speaks>>,
}

impl Stack {
    fn load() -> Stack {
        let compose = Compose::load();
        let dockerfile = Dockerfile::load();
        let mut roles = BTreeMap::new();
        let mut listeners = BTreeMap::new();
        for name in compose.services().keys() {
            let role = compose.role(name, &dockerfile);
            roles.insert(name.clone(), role);
            let mut ports = BTreeMap::new();
            match role {
                Role::Region => {
                    let addr = compose
                        .env(name)
                        .get("RIDESHARE_LISTEN_ADDR")
                        .cloned()
                        .unwrap_or_else(|| DEFAULT_LISTEN_ADDR.to_owned());
                    let port = addr.rsplit(':').next().and_then(|p| p.parse().ok());
                    let port = port.unwrap_or_else(|| {
                        panic!("{COMPOSE_FILE}: {name}: RIDESHARE_LISTEN_ADDR={addr:?} has no port")
                    });
                    ports.insert(port, Speaks::Rideshare);
                }
                Role::LoadGenerator => {}
                Role::Pyroscope => {
                    let argv = compose.argv(name, &dockerfile);
                    let port = flag_value(&argv, "-server.http-listen-port")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(PYROSCOPE_DEFAULT_PORT);
                    ports.insert(port, Speaks::Pyroscope);
                }
                Role::Tempo => {
                    let tempo = TempoConfig::for_service(&compose, name, &dockerfile);
                    ports.insert(tempo.http_port, Speaks::TempoApi);
                    for (port, speaks) in tempo.receivers {
                        ports.insert(port, speaks);
                    }
                }
                Role::Grafana => {
                    let port = compose
                        .env(name)
                        .get("GF_SERVER_HTTP_PORT")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(GRAFANA_DEFAULT_PORT);
                    ports.insert(port, Speaks::Grafana);
                }
            }
            listeners.insert(name.clone(), ports);
        }
        Stack {
            compose,
            dockerfile,
            roles,
            listeners,
        }
    }

    fn with_role(&self, role: Role) -> Vec<String> {
        self.roles
            .iter()
            .filter(|(_, r)| **r == role)
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn apps(&self) -> Vec<String> {
        self.roles
            .iter()
            .filter(|(_, r)| matches!(r, Role::Region | Role::LoadGenerator))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Checks that `url` (configured in `setting`) names a compose service and a port of it that
    /// speaks `speaks`.
    fn check_url(&self, who: &str, setting: &str, url: &str, speaks: Speaks) -> Result<(), String> {
        let parsed = url::Url::parse(url)
            .map_err(|e| format!("{who}: {setting}={url:?} is not a URL: {e}"))?;
        let host = parsed.host_str().unwrap_or("");
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| format!("{who}: {setting}={url:?} has no port"))?;
        let Some(ports) = self.listeners.get(host) else {
            let hint = if matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]") {
                " (inside a container that is the container itself)"
            } else {
                ""
            };
            return Err(format!(
                "{who}: {setting}={url:?}: host {host:?} is not a compose service{hint}; services: {:?}",
                self.listeners.keys().collect::<Vec<_>>()
            ));
        };
        match ports.get(&port) {
            Some(s) if *s == speaks => Ok(()),
            Some(other) => Err(format!(
                "{who}: {setting}={url:?}: {host}:{port} speaks {other:?}, not {speaks:?}"
            )),
            None => Err(format!(
                "{who}: {setting}={url:?}: {host} does not listen on {port}; it listens on {:?}",
                ports
            )),
        }
    }

    /// The service name the region services report, for both traces and profiles.
    fn region_service_name(&self) -> String {
        let names: BTreeSet<String> = self
            .with_role(Role::Region)
            .iter()
            .map(|r| effective_service_name(&self.compose.env(r), rideshare::DEFAULT_SERVICE_NAME))
            .collect();
        assert!(
            !names.is_empty(),
            "{COMPOSE_FILE}: no service runs the rideshare server (`rideshare` as its command)"
        );
        assert_eq!(
            names.len(),
            1,
            "{COMPOSE_FILE}: the regions must report one service name (dashboards select by it), got {names:?}"
        );
        names.into_iter().next().unwrap()
    }
}

/// The name the service (and the load generator) use: OTEL_SERVICE_NAME wins over
/// PYROSCOPE_APPLICATION_NAME, else the binary's default.
fn effective_service_name(env: &BTreeMap<String, String>, default: &str) -> String {
    env.get("OTEL_SERVICE_NAME")
        .or_else(|| env.get("PYROSCOPE_APPLICATION_NAME"))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The value of `-flag=value` or `-flag value` (or `--flag`).
fn flag_value(argv: &[String], flag: &str) -> Option<String> {
    let long = format!("-{flag}");
    for (i, arg) in argv.iter().enumerate() {
        for f in [flag, long.as_str()] {
            if let Some(v) = arg.strip_prefix(f).and_then(|r| r.strip_prefix('=')) {
                return Some(v.to_owned());
            }
            if arg == f {
                return argv.get(i + 1).cloned();
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Tempo's configuration

struct TempoConfig {
    http_port: u16,
    receivers: Vec<(u16, Speaks)>,
}

impl TempoConfig {
    /// Reads otel/tempo.yaml, after checking the service really runs with it.
    fn for_service(compose: &Compose, name: &str, dockerfile: &Dockerfile) -> TempoConfig {
        let mounted = compose.mount_target(name, TEMPO_CONFIG).unwrap_or_else(|| {
            panic!("{COMPOSE_FILE}: service {name} (Tempo) does not mount ./{TEMPO_CONFIG}")
        });
        let argv = compose.argv(name, dockerfile);
        let config_flag = flag_value(&argv, "-config.file");
        assert_eq!(
            config_flag.as_deref(),
            Some(mounted.as_str()),
            "{COMPOSE_FILE}: service {name} must run Tempo with -config.file={mounted} (where \
             ./{TEMPO_CONFIG} is mounted); its command is {argv:?}"
        );
        TempoConfig::parse(&yaml(TEMPO_CONFIG))
    }

    fn parse(doc: &Value) -> TempoConfig {
        let http_port = doc["server"]["http_listen_port"]
            .as_u64()
            .unwrap_or_else(|| panic!("{TEMPO_CONFIG}: server.http_listen_port is not set"))
            as u16;
        let mut receivers = Vec::new();
        let protocols = &doc["distributor"]["receivers"]["otlp"]["protocols"];
        for (key, speaks) in [("grpc", Speaks::OtlpGrpc), ("http", Speaks::OtlpHttp)] {
            if protocols.get(key).is_none() {
                continue;
            }
            let endpoint = protocols[key]["endpoint"].as_str().unwrap_or_else(|| {
                panic!(
                    "{TEMPO_CONFIG}: distributor.receivers.otlp.protocols.{key}.endpoint is not set: \
                     Tempo 2.7+ then listens on localhost only, out of the other containers' reach"
                )
            });
            let (host, port) = endpoint.rsplit_once(':').unwrap_or_else(|| {
                panic!("{TEMPO_CONFIG}: otlp {key} endpoint {endpoint:?} is not host:port")
            });
            assert!(
                matches!(host, "0.0.0.0" | "" | "[::]" | "::"),
                "{TEMPO_CONFIG}: the otlp {key} receiver listens on {endpoint:?}: only that \
                 container can reach it; use 0.0.0.0:{port}"
            );
            let port = port.parse().unwrap_or_else(|_| {
                panic!("{TEMPO_CONFIG}: otlp {key} endpoint {endpoint:?} has no numeric port")
            });
            receivers.push((port, speaks));
        }
        TempoConfig {
            http_port,
            receivers,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile

#[derive(Debug, Clone)]
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

struct Stage {
    name: Option<String>,
    image: String,
    instructions: Vec<Instruction>,
}

struct Dockerfile {
    stages: Vec<Stage>,
}

impl Dockerfile {
    fn load() -> Dockerfile {
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

    fn stage(&self, name_or_index: &str) -> Option<&Stage> {
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

    fn entrypoint(&self) -> Vec<String> {
        self.exec_form("ENTRYPOINT")
    }

    fn cmd(&self) -> Vec<String> {
        self.exec_form("CMD")
    }

    /// Files the runtime stage copies from another stage: (stage, source path, path in the image).
    fn copied_from_stages(&self) -> Vec<(String, String, String)> {
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
    fn user(&self) -> Option<String> {
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

/// Is `user` (compose `user:` or Dockerfile `USER`) a fixed, non-root uid?
fn non_root_uid(user: &str) -> Result<u32, String> {
    let uid = user.split(':').next().unwrap_or("").trim();
    match uid.parse::<u32>() {
        Ok(0) => Err(format!("{user:?} is root (uid 0)")),
        Ok(n) => Ok(n),
        Err(_) if uid == "root" => Err(format!("{user:?} is root")),
        Err(_) => Err(format!(
            "{user:?} is a name: give a numeric uid, so a runtime can tell it is not root"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// cargo metadata

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
fn package_targets() -> Vec<(String, String, String)> {
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

fn bins() -> Vec<String> {
    package_targets()
        .into_iter()
        .filter(|(kind, _, _)| kind == "bin")
        .map(|(_, name, _)| name)
        .collect()
}

fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>());
    let major = it.next()?.ok()?;
    let minor = it.next().unwrap_or(Ok(0)).ok()?;
    let patch = it.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

// ---------------------------------------------------------------------------------------------
// Label selectors and TraceQL

/// `{a="x", b=~"y|z"}` -> [(a, "=", "x"), (b, "=~", "y|z")].
fn parse_label_selector(sel: &str) -> Result<Vec<(String, String, String)>, String> {
    let inner = sel
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| format!("label selector {sel:?} is not {{...}}"))?;
    let mut out = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .ok_or_else(|| format!("label selector {sel:?}: matcher without operator"))?;
        let name = rest[..name_end].to_owned();
        let after = rest[name_end..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| after.starts_with(op))
            .ok_or_else(|| format!("label selector {sel:?}: no operator after {name:?}"))?;
        let after = after[op.len()..].trim_start();
        let (value, tail) = quoted(after)
            .ok_or_else(|| format!("label selector {sel:?}: value of {name:?} is not quoted"))?;
        out.push((name, op.to_owned(), value));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Ok(out)
}

/// A leading `"..."` string (with `\"` escapes) and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?.1),
            '"' => return Some((value, &body[i + 1..])),
            c => value.push(c),
        }
    }
    None
}

/// The conditions of a TraceQL spanset filter: (attribute, operator, value as written).
fn traceql_conditions(query: &str) -> Result<Vec<(String, String, String)>, String> {
    let start = query
        .find('{')
        .ok_or_else(|| format!("TraceQL {query:?} has no spanset filter {{...}}"))?;
    let end = query[start..]
        .find('}')
        .map(|i| start + i)
        .ok_or_else(|| format!("TraceQL {query:?}: unclosed {{"))?;
    let mut out = Vec::new();
    for cond in query[start + 1..end].split("&&") {
        let cond = cond.trim();
        if cond.is_empty() {
            continue;
        }
        let op_at = cond
            .find(['=', '!', '<', '>'])
            .ok_or_else(|| format!("TraceQL {query:?}: {cond:?} has no comparison"))?;
        let attr = cond[..op_at].trim().to_owned();
        let rest = &cond[op_at..];
        let op_len = rest
            .find(|c: char| !matches!(c, '=' | '!' | '<' | '>' | '~'))
            .unwrap_or(rest.len());
        let op = rest[..op_len].to_owned();
        let value = rest[op_len..].trim();
        let value = quoted(value).map_or_else(|| value.to_owned(), |(v, _)| v);
        if attr.contains("||") || value.contains("||") {
            return Err(format!(
                "TraceQL {query:?}: `||` is not understood by this test"
            ));
        }
        out.push((attr, op, value));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Grafana provisioning

fn datasources() -> Vec<Value> {
    yaml(DATASOURCES)["datasources"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{DATASOURCES} has no `datasources` list"))
}

fn datasource_by_uid(uid: &str) -> Option<Value> {
    datasources().into_iter().find(|d| d["uid"] == uid)
}

/// Every panel, rows' nested panels included.
fn all_panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    fn walk(panels: &Value, out: &mut Vec<Value>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p.clone());
            walk(&p["panels"], out);
        }
    }
    walk(&dashboard["panels"], &mut out);
    out
}

/// (panel title, panel type, target, datasource uid) for every query of the dashboard.
fn dashboard_targets(dashboard: &Value) -> Vec<(String, String, Value, String)> {
    let mut out = Vec::new();
    for p in all_panels(dashboard) {
        let title = p["title"].as_str().unwrap_or("?").to_owned();
        let kind = p["type"].as_str().unwrap_or("?").to_owned();
        for t in p["targets"].as_array().into_iter().flatten() {
            let ds = t["datasource"]["uid"]
                .as_str()
                .or_else(|| p["datasource"]["uid"].as_str())
                .unwrap_or("")
                .to_owned();
            out.push((title.clone(), kind.clone(), t.clone(), ds));
        }
    }
    out
}

// =============================================================================================
// Tests

#[test]
fn compose_file_is_valid_against_the_compose_specification() {
    let schema_path = path(COMPOSE_SCHEMA);
    let schema_text = std::fs::read_to_string(&schema_path).unwrap_or_else(|e| {
        panic!(
            "the Compose Specification schema is missing: {} ({e}). The repository is expected \
             to be checked out with `shared/` beside it (shared/schemas/compose-spec.json).",
            schema_path.display()
        )
    });
    let schema: Value = serde_json::from_str(&schema_text).expect("compose-spec.json is JSON");
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(&schema)
        .expect("compose-spec.json is a valid draft-07 schema");
    let compose = Compose::load();
    let problems: Vec<String> = validator
        .iter_errors(&compose.doc)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect();
    assert_no_problems(COMPOSE_FILE, &problems);
    assert!(
        compose.doc.get("version").is_none(),
        "{COMPOSE_FILE}: the top-level `version` key is obsolete; remove it"
    );
}

#[test]
fn the_stack_has_three_regions_a_load_generator_and_the_backends() {
    let stack = Stack::load();
    let mut problems = Vec::new();
    let regions = stack.with_role(Role::Region);
    let mut seen = BTreeSet::new();
    for svc in &regions {
        let env = stack.compose.env(svc);
        match env.get("REGION") {
            None => problems.push(format!("{svc}: REGION is not set")),
            Some(r) if !rideshare::REGIONS.contains(&r.as_str()) => problems.push(format!(
                "{svc}: REGION={r:?} is not one of {:?}",
                rideshare::REGIONS
            )),
            Some(r) => {
                if r != svc {
                    problems.push(format!(
                        "service {svc} runs region {r:?}: name it after its region"
                    ));
                }
                if !seen.insert(r.clone()) {
                    problems.push(format!("region {r:?} runs twice"));
                }
            }
        }
    }
    for r in rideshare::REGIONS {
        if !seen.contains(r) {
            problems.push(format!("no service runs region {r:?}"));
        }
    }
    match stack.compose.env("eu-north").get("RIDESHARE_MUTEX_HOTSPOT") {
        Some(v) if v == "periodic" || v == "on" => {}
        other => problems.push(format!(
            "eu-north: RIDESHARE_MUTEX_HOTSPOT={other:?}: the walkthrough's slow car orders need \
             `periodic`"
        )),
    }
    for role in [
        Role::LoadGenerator,
        Role::Pyroscope,
        Role::Tempo,
        Role::Grafana,
    ] {
        if stack.with_role(role).len() != 1 {
            problems.push(format!(
                "expected one {role:?} service, found {:?}",
                stack.with_role(role)
            ));
        }
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

#[test]
fn apps_reach_pyroscope_and_tempo_on_ports_that_speak_their_protocol() {
    let stack = Stack::load();
    let mut problems = Vec::new();
    for app in stack.apps() {
        let env = stack.compose.env(&app);
        // Profiles.
        let enabled = env.get("PYROSCOPE_ENABLED").is_none_or(|v| {
            !matches!(
                v.to_ascii_lowercase().as_str(),
                "false" | "0" | "no" | "off"
            )
        });
        if enabled {
            let addr = env
                .get("PYROSCOPE_SERVER_ADDRESS")
                .map_or("http://localhost:4040", String::as_str);
            if let Err(e) =
                stack.check_url(&app, "PYROSCOPE_SERVER_ADDRESS", addr, Speaks::Pyroscope)
            {
                problems.push(e);
            }
        }
        // Traces: the variables as the OTLP exporter spec (and the service) read them.
        let protocol = env
            .get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| env.get("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .map_or("http/protobuf", String::as_str);
        let speaks = match protocol {
            "grpc" => Speaks::OtlpGrpc,
            "http/protobuf" => Speaks::OtlpHttp,
            other => {
                problems.push(format!(
                    "{app}: OTLP protocol {other:?} is neither grpc nor http/protobuf"
                ));
                continue;
            }
        };
        let (setting, endpoint) = if let Some(e) = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", e.clone())
        } else if let Some(e) = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            ("OTEL_EXPORTER_OTLP_ENDPOINT", e.clone())
        } else {
            let default = if speaks == Speaks::OtlpGrpc {
                "http://localhost:4317"
            } else {
                "http://localhost:4318"
            };
            ("OTEL_EXPORTER_OTLP_ENDPOINT (default)", default.to_owned())
        };
        if let Err(e) = stack.check_url(
            &app,
            &format!("{setting} with protocol {protocol}"),
            &endpoint,
            speaks,
        ) {
            problems.push(e);
        }
        if let Ok(url) = url::Url::parse(&endpoint) {
            let path = url.path().trim_end_matches('/');
            let signal_specific = setting == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
            match speaks {
                Speaks::OtlpHttp if signal_specific && path != "/v1/traces" => {
                    problems.push(format!(
                        "{app}: {setting}={endpoint:?} is used as is: its path must be /v1/traces"
                    ))
                }
                Speaks::OtlpHttp if !signal_specific && !path.is_empty() => problems.push(format!(
                    "{app}: {setting}={endpoint:?}: the exporter appends /v1/traces to this path; \
                     Tempo receives on /v1/traces only"
                )),
                Speaks::OtlpGrpc if !path.is_empty() => problems.push(format!(
                    "{app}: {setting}={endpoint:?}: a gRPC endpoint has no path"
                )),
                _ => {}
            }
        }
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

#[test]
fn load_generator_orders_from_every_region_until_stopped() {
    let stack = Stack::load();
    let mut problems = Vec::new();
    for lg in stack.with_role(Role::LoadGenerator) {
        let argv = stack.compose.argv(&lg, &stack.dockerfile);
        let mut targeted = BTreeSet::new();
        for arg in argv.iter().filter(|a| a.contains("://")) {
            if let Err(e) = stack.check_url(&lg, "loadgen URL", arg, Speaks::Rideshare) {
                problems.push(e);
            }
            if let Some(host) = url::Url::parse(arg)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
            {
                targeted.insert(host);
            }
        }
        for region in stack.with_role(Role::Region) {
            if !targeted.contains(&region) {
                problems.push(format!(
                    "{lg}: sends no load to {region} (command {argv:?})"
                ));
            }
        }
        match flag_value(&argv, "-duration") {
            Some(d) if d.trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0" => {}
            other => problems.push(format!(
                "{lg}: --duration is {other:?}: it must be 0s so the load runs until the stack stops"
            )),
        }
        let env = stack.compose.env(&lg);
        let own = effective_service_name(&env, rideshare::loadgen::SERVICE_NAME);
        if own == stack.region_service_name() {
            problems.push(format!(
                "{lg}: reports service name {own:?}, the regions' own: its spans and profiles would \
                 mix with the service's"
            ));
        }
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

#[test]
fn health_checks_and_start_order() {
    let stack = Stack::load();
    let compose = &stack.compose;
    let mut problems = Vec::new();
    let image_bins: BTreeSet<String> = stack
        .dockerfile
        .copied_from_stages()
        .into_iter()
        .map(|(_, _, dest)| dest)
        .collect();
    for (svc, role) in &stack.roles {
        let hc = compose.service(svc).get("healthcheck");
        let disabled = hc.is_some_and(|h| h["disable"] == true);
        let test = strings(hc.and_then(|h| h.get("test")));
        match role {
            // It serves nothing: nothing to check.
            Role::LoadGenerator => continue,
            // The image is distroless (no shell, no HTTP client): dependents wait for "started".
            Role::Tempo => {
                if !test.is_empty() && !disabled {
                    problems.push(format!(
                        "{svc}: the Tempo image has no tool to run health check {test:?}"
                    ));
                }
                continue;
            }
            _ => {}
        }
        if test.is_empty() || disabled {
            problems.push(format!("{svc}: no health check"));
            continue;
        }
        if *role == Role::Region {
            let program = test.get(1).map_or("", String::as_str);
            if test.first().map(String::as_str) != Some("CMD") || !image_bins.contains(program) {
                problems.push(format!(
                    "{svc}: health check {test:?} must run [\"CMD\", <rideshare binary>, \"healthcheck\"] \
                     with a binary the image has: {image_bins:?}"
                ));
            }
            if test.get(2).map(String::as_str) != Some("healthcheck") {
                problems.push(format!(
                    "{svc}: health check {test:?} must use `rideshare healthcheck`"
                ));
            }
            let url = flag_value(&test, "-url").unwrap_or_else(|| DEFAULT_HEALTHCHECK_URL.into());
            let port = url::Url::parse(&url)
                .ok()
                .and_then(|u| u.port_or_known_default());
            let listens = stack.listeners[svc].keys().copied().collect::<Vec<_>>();
            if port.is_none_or(|p| !listens.contains(&p)) {
                problems.push(format!(
                    "{svc}: the health check asks {url}, but the service listens on {listens:?}"
                ));
            }
        }
    }
    // Apps start after their backends; health-checked backends must be healthy first.
    for (svc, role) in &stack.roles {
        let deps = compose.service(svc).get("depends_on");
        let wanted: Vec<String> = match role {
            Role::Region => [Role::Pyroscope, Role::Tempo]
                .into_iter()
                .flat_map(|r| stack.with_role(r))
                .collect(),
            Role::LoadGenerator => stack.with_role(Role::Region),
            Role::Grafana => [Role::Pyroscope, Role::Tempo]
                .into_iter()
                .flat_map(|r| stack.with_role(r))
                .collect(),
            _ => Vec::new(),
        };
        for dep in wanted {
            let condition = deps
                .and_then(|d| d.get(&dep))
                .and_then(|d| d["condition"].as_str());
            let has_hc = compose.service(&dep).get("healthcheck").is_some();
            let expected = if has_hc {
                "service_healthy"
            } else {
                "service_started"
            };
            if condition != Some(expected) {
                problems.push(format!(
                    "{svc}: must depend on {dep} with condition {expected}, has {condition:?}"
                ));
            }
        }
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

#[test]
fn image_tags_are_pinned() {
    let stack = Stack::load();
    let mut problems = Vec::new();
    for svc in stack.roles.keys() {
        let Some(image) = stack.compose.image(svc) else {
            if !stack.compose.is_built(svc) {
                problems.push(format!("{svc}: neither image nor build"));
            }
            continue;
        };
        if image.contains('@') {
            continue; // a digest pins exactly
        }
        match split_tag(&image).1 {
            None => problems.push(format!(
                "{svc}: image {image:?} has no tag (means `latest`)"
            )),
            Some("latest") => problems.push(format!("{svc}: image {image:?} is `latest`")),
            // An image compose builds locally may carry any fixed name; a pulled one needs a version.
            Some(tag)
                if !stack.compose.is_built(svc) && !tag.contains(|c: char| c.is_ascii_digit()) =>
            {
                problems.push(format!(
                    "{svc}: image {image:?}: tag {tag:?} is not a version"
                ))
            }
            Some(_) => {}
        }
    }
    for stage in &stack.dockerfile.stages {
        if stack.dockerfile.stage(&stage.image).is_some() {
            continue; // FROM an earlier stage
        }
        match split_tag(&stage.image).1 {
            None | Some("latest") if !stage.image.contains('@') => problems.push(format!(
                "{DOCKERFILE}: FROM {} is not pinned to a version",
                stage.image
            )),
            _ => {}
        }
    }
    assert_no_problems("image tags", &problems);
}

#[test]
fn published_ports_are_bound_to_localhost_and_reach_a_listener() {
    let stack = Stack::load();
    let mut problems = Vec::new();
    for svc in stack.roles.keys() {
        for p in stack.compose.ports(svc) {
            if p.host_ip.as_deref() != Some("127.0.0.1") {
                problems.push(format!(
                    "{svc}: port {:?} is published on {}: bind it to 127.0.0.1",
                    p.raw,
                    p.host_ip.as_deref().unwrap_or("every interface")
                ));
            }
            match p.target {
                Some(t) if stack.listeners[svc].contains_key(&t) => {}
                _ => problems.push(format!(
                    "{svc}: port {:?} targets a port the service does not listen on ({:?})",
                    p.raw, stack.listeners[svc]
                )),
            }
        }
    }
    for (svc, role, port) in [
        (Role::Grafana, "Grafana", GRAFANA_DEFAULT_PORT),
        (Role::Pyroscope, "Pyroscope", PYROSCOPE_DEFAULT_PORT),
    ] {
        for name in stack.with_role(svc) {
            if !stack
                .compose
                .ports(&name)
                .iter()
                .any(|p| p.target == Some(port))
            {
                problems.push(format!(
                    "{name}: {role} must be published on 127.0.0.1:{port}"
                ));
            }
        }
    }
    for name in stack.with_role(Role::Tempo) {
        let api = TempoConfig::parse(&yaml(TEMPO_CONFIG)).http_port;
        if !stack
            .compose
            .ports(&name)
            .iter()
            .any(|p| p.target == Some(api))
        {
            problems.push(format!(
                "{name}: the Tempo API must be published on 127.0.0.1:{api}"
            ));
        }
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

/// The users the pulled images run as when compose does not say (from their Dockerfiles). None
/// runs as root; `user:` is still set in docker-compose.yml, to the same ids, so the compose file
/// says it outright and volume ownership stays what the image prepared.
const IMAGE_DEFAULT_USERS: [(&str, &str); 3] = [
    ("grafana/pyroscope", "10001"), // USER pyroscope (uid 10001), owns /data
    ("grafana/tempo", "10001"),     // USER 10001:10001
    ("grafana/grafana", "472"),     // uid 472, group 0
];

#[test]
fn no_container_runs_as_root() {
    let stack = Stack::load();
    let mut problems = Vec::new();
    let image_user = stack.dockerfile.user();
    for svc in stack.roles.keys() {
        let compose_user = stack.compose.service(svc).get("user").and_then(scalar);
        if let Some(u) = &compose_user {
            if let Err(e) = non_root_uid(u) {
                problems.push(format!("{svc}: user: {e}"));
            }
            continue;
        }
        if stack.compose.is_built(svc) {
            match &image_user {
                None => problems.push(format!(
                    "{svc}: built from {DOCKERFILE}, whose runtime stage has no USER: it runs as root"
                )),
                Some(u) => {
                    if let Err(e) = non_root_uid(u) {
                        problems.push(format!("{svc}: {DOCKERFILE} USER {e}"));
                    }
                }
            }
            continue;
        }
        let repo = image_repository(&stack.compose.image(svc).unwrap_or_default());
        match IMAGE_DEFAULT_USERS.iter().find(|(r, _)| *r == repo) {
            Some((_, uid)) if non_root_uid(uid).is_ok() => {}
            _ => problems.push(format!(
                "{svc}: image {repo} may run as root: set `user:` to a non-root uid it supports"
            )),
        }
    }
    // The image itself, whoever runs it.
    match &image_user {
        Some(u) => {
            if let Err(e) = non_root_uid(u) {
                problems.push(format!("{DOCKERFILE}: USER {e}"));
            }
        }
        None => problems.push(format!("{DOCKERFILE}: the runtime stage has no USER")),
    }
    assert_no_problems("users", &problems);
}

#[test]
fn grafana_reaches_its_data_sources_and_links_spans_to_profiles() {
    let stack = Stack::load();
    let mut problems = Vec::new();
    let all = datasources();
    let tempo_ds: Vec<&Value> = all.iter().filter(|d| d["type"] == "tempo").collect();
    assert_eq!(
        tempo_ds.len(),
        1,
        "{DATASOURCES}: expected one Tempo data source"
    );
    let tempo = tempo_ds[0];
    for ds in &all {
        let name = ds["name"].as_str().unwrap_or("?");
        if ds["uid"].as_str().is_none_or(str::is_empty) {
            problems.push(format!(
                "data source {name}: no fixed uid (links and panels refer to uids)"
            ));
        }
        let speaks = match ds["type"].as_str() {
            Some("tempo") => Speaks::TempoApi,
            Some("grafana-pyroscope-datasource") => Speaks::Pyroscope,
            other => {
                problems.push(format!("data source {name}: unknown type {other:?}"));
                continue;
            }
        };
        let url = ds["url"].as_str().unwrap_or("");
        for grafana in stack.with_role(Role::Grafana) {
            if let Err(e) =
                stack.check_url(&grafana, &format!("data source {name} url"), url, speaks)
            {
                problems.push(e);
            }
        }
    }
    let link = &tempo["jsonData"]["tracesToProfiles"];
    if link.is_null() {
        problems.push("Tempo data source: no jsonData.tracesToProfiles".into());
    }
    let target_uid = link["datasourceUid"].as_str().unwrap_or("");
    match datasource_by_uid(target_uid) {
        None => problems.push(format!(
            "tracesToProfiles.datasourceUid {target_uid:?} is no provisioned data source's uid"
        )),
        Some(ds) if ds["type"] != "grafana-pyroscope-datasource" => problems.push(format!(
            "tracesToProfiles.datasourceUid {target_uid:?} is a {} data source, not \
             grafana-pyroscope-datasource",
            ds["type"]
        )),
        Some(_) => {}
    }
    if link["profileTypeId"] != rideshare::PROFILE_TYPE_ID {
        problems.push(format!(
            "tracesToProfiles.profileTypeId is {}, the service pushes {}",
            link["profileTypeId"],
            rideshare::PROFILE_TYPE_ID
        ));
    }
    let tags: Vec<(String, String)> = link["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["key"].as_str().unwrap_or("").to_owned(),
                t["value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    if !tags.contains(&(
        SERVICE_NAME_ATTRIBUTE.to_owned(),
        PYROSCOPE_SERVICE_LABEL.to_owned(),
    )) {
        problems.push(format!(
            "tracesToProfiles.tags {tags:?} must map {SERVICE_NAME_ATTRIBUTE} to the profile label \
             {PYROSCOPE_SERVICE_LABEL}"
        ));
    }
    for (key, label) in &tags {
        if label == tracing_span_profiles::SPAN_ID_LABEL {
            problems.push(format!(
                "tracesToProfiles.tags maps {key} to {label}: span ids are per sample, never series labels"
            ));
        }
    }
    if link["customQuery"] == true {
        problems.push(
            "tracesToProfiles.customQuery is true: the default query selects the span's own samples"
                .into(),
        );
    }
    assert_no_problems(DATASOURCES, &problems);
}

#[test]
fn grafana_is_provisioned_with_the_drilldown_app_and_anonymous_viewers() {
    let stack = Stack::load();
    let mut problems = Vec::new();
    for grafana in stack.with_role(Role::Grafana) {
        let env = stack.compose.env(&grafana);
        let get = |k: &str| env.get(k).cloned().unwrap_or_default();
        if get("GF_AUTH_ANONYMOUS_ENABLED") != "true" {
            problems.push(format!("{grafana}: GF_AUTH_ANONYMOUS_ENABLED must be true"));
        }
        if get("GF_AUTH_ANONYMOUS_ORG_ROLE") != "Viewer" {
            problems.push(format!(
                "{grafana}: GF_AUTH_ANONYMOUS_ORG_ROLE={:?}: anonymous users must be Viewer, \
                 not Editor or Admin",
                get("GF_AUTH_ANONYMOUS_ORG_ROLE")
            ));
        }
        let plugins = get("GF_PLUGINS_PREINSTALL_SYNC");
        if !plugins
            .split(',')
            .any(|p| p.trim().starts_with("grafana-pyroscope-app"))
        {
            problems.push(format!(
                "{grafana}: GF_PLUGINS_PREINSTALL_SYNC={plugins:?} lacks grafana-pyroscope-app \
                 (Profiles Drilldown)"
            ));
        }
        let toggles = get("GF_FEATURE_TOGGLES_ENABLE");
        for t in ["traceToProfiles", "tracesEmbeddedFlameGraph"] {
            if !toggles.split([' ', ',']).any(|x| x == t) {
                problems.push(format!(
                    "{grafana}: GF_FEATURE_TOGGLES_ENABLE={toggles:?} lacks {t}"
                ));
            }
        }
        // Provisioning is mounted where Grafana reads it.
        let prov_dir = env
            .get("GF_PATHS_PROVISIONING")
            .cloned()
            .unwrap_or_else(|| "/etc/grafana/provisioning".into());
        match stack.compose.mount_target(&grafana, "grafana/provisioning") {
            Some(t) if t == prov_dir => {}
            other => problems.push(format!(
                "{grafana}: ./grafana/provisioning must be mounted at {prov_dir}, is at {other:?}"
            )),
        }
        // The dashboard provider reads the mounted dashboards, and the home page is the dashboard.
        let providers = yaml(DASHBOARD_PROVIDERS);
        let provider_paths: Vec<String> = providers["providers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["options"]["path"].as_str().map(str::to_owned))
            .collect();
        let dash_dir = stack.compose.mount_target(&grafana, "grafana/dashboards");
        match &dash_dir {
            Some(d) if provider_paths.contains(d) => {}
            _ => problems.push(format!(
                "{DASHBOARD_PROVIDERS}: provider paths {provider_paths:?} do not include where \
                 ./grafana/dashboards is mounted ({dash_dir:?})"
            )),
        }
        let home = get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH");
        let expected_home = dash_dir
            .as_deref()
            .map(|d| format!("{}/{}", d.trim_end_matches('/'), basename(DASHBOARD)));
        if Some(&home) != expected_home.as_ref() {
            problems.push(format!(
                "{grafana}: GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH={home:?}: the home page must \
                 be the Rideshare dashboard, {expected_home:?}"
            ));
        }
    }
    let dash = json(DASHBOARD);
    if dash["title"] != "Rideshare" || dash["uid"].as_str().is_none_or(str::is_empty) {
        problems.push(format!(
            "{DASHBOARD}: title must be \"Rideshare\" with a fixed uid, is {} / {}",
            dash["title"], dash["uid"]
        ));
    }
    assert_no_problems("Grafana", &problems);
}

#[test]
fn dashboard_queries_use_only_labels_and_values_the_service_emits() {
    let stack = Stack::load();
    let service_name = stack.region_service_name();
    let dash = json(DASHBOARD);
    let vehicles: Vec<&str> = rideshare::VEHICLES.iter().map(|(v, _)| *v).collect();
    let span_names: Vec<String> = vehicles.iter().map(|v| format!("GET /{v}")).collect();
    let series_labels = [
        PYROSCOPE_SERVICE_LABEL,
        rideshare::REGION_LABEL,
        rideshare::VEHICLE_LABEL,
        tracing_span_profiles::SPAN_NAME_LABEL,
    ];
    let mut problems = Vec::new();
    let mut grouped_by = BTreeSet::new();
    let mut flamegraph_values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut trace_tables = 0;

    let check_value = |label: &str, value: &str| -> Result<(), String> {
        let ok = if label == PYROSCOPE_SERVICE_LABEL {
            value == service_name
        } else if label == rideshare::REGION_LABEL {
            rideshare::REGIONS.contains(&value)
        } else if label == rideshare::VEHICLE_LABEL {
            vehicles.contains(&value)
        } else if label == tracing_span_profiles::SPAN_NAME_LABEL {
            span_names.iter().any(|s| s == value)
        } else {
            return Err(format!(
                "label {label:?} is not a series label of the service ({series_labels:?})"
            ));
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{label}={value:?} is a value the service never emits"
            ))
        }
    };

    let targets = dashboard_targets(&dash);
    assert!(!targets.is_empty(), "{DASHBOARD} has no queries");
    for (title, kind, t, ds_uid) in &targets {
        let Some(ds) = datasource_by_uid(ds_uid) else {
            problems.push(format!(
                "panel {title:?}: data source uid {ds_uid:?} is not provisioned"
            ));
            continue;
        };
        match ds["type"].as_str() {
            Some("grafana-pyroscope-datasource") => {
                if t["profileTypeId"] != rideshare::PROFILE_TYPE_ID {
                    problems.push(format!(
                        "panel {title:?}: profileTypeId {} is not {}",
                        t["profileTypeId"],
                        rideshare::PROFILE_TYPE_ID
                    ));
                }
                let qt = t["queryType"].as_str().unwrap_or("");
                let fits = match kind.as_str() {
                    "flamegraph" => qt == "profile" || qt == "both",
                    "timeseries" => qt == "metrics" || qt == "both",
                    _ => matches!(qt, "metrics" | "profile" | "both"),
                };
                if !fits {
                    problems.push(format!(
                        "panel {title:?} ({kind}): queryType {qt:?} does not fit"
                    ));
                }
                let selector = t["labelSelector"].as_str().unwrap_or("");
                match parse_label_selector(selector) {
                    Err(e) => problems.push(format!("panel {title:?}: {e}")),
                    Ok(matchers) => {
                        if !matchers.iter().any(|(l, op, v)| {
                            l == PYROSCOPE_SERVICE_LABEL && op == "=" && *v == service_name
                        }) {
                            problems.push(format!(
                                "panel {title:?}: labelSelector {selector:?} must select \
                                 {PYROSCOPE_SERVICE_LABEL}=\"{service_name}\""
                            ));
                        }
                        for (label, op, value) in matchers {
                            let values: Vec<&str> = if op.ends_with('~') {
                                value.split('|').collect()
                            } else {
                                vec![value.as_str()]
                            };
                            for v in values {
                                if let Err(e) = check_value(&label, v) {
                                    problems.push(format!("panel {title:?}: {e}"));
                                }
                            }
                            if kind == "flamegraph" && op == "=" {
                                flamegraph_values
                                    .entry(label.clone())
                                    .or_default()
                                    .insert(value.clone());
                            }
                        }
                    }
                }
                for g in strings(t.get("groupBy")) {
                    if !series_labels.contains(&g.as_str()) {
                        problems.push(format!(
                            "panel {title:?}: groupBy {g:?} is not a series label of the service \
                             ({series_labels:?}; {} is per sample)",
                            tracing_span_profiles::SPAN_ID_LABEL
                        ));
                    }
                    grouped_by.insert(g);
                }
            }
            Some("tempo") => {
                let query = t["query"].as_str().unwrap_or("");
                if kind == "table" {
                    trace_tables += 1;
                }
                match traceql_conditions(query) {
                    Err(e) => problems.push(format!("panel {title:?}: {e}")),
                    Ok(conds) => {
                        let service_attr = format!("resource.{SERVICE_NAME_ATTRIBUTE}");
                        let profile_attr =
                            format!("span.{}", tracing_span_profiles::PROFILE_ID_ATTRIBUTE);
                        if !conds
                            .iter()
                            .any(|(a, op, v)| *a == service_attr && op == "=" && *v == service_name)
                        {
                            problems.push(format!(
                                "panel {title:?}: TraceQL {query:?} must select \
                                 {service_attr}=\"{service_name}\""
                            ));
                        }
                        for (attr, op, value) in &conds {
                            let ok = if *attr == service_attr {
                                *value == service_name
                            } else if attr == "name" {
                                span_names.contains(value)
                            } else if attr == "resource.cloud.region" {
                                rideshare::REGIONS.contains(&value.as_str())
                            } else if *attr == profile_attr {
                                op == "!=" && value == "nil"
                            } else {
                                matches!(attr.as_str(), "duration" | "kind" | "status")
                            };
                            if !ok {
                                problems.push(format!(
                                    "panel {title:?}: TraceQL condition `{attr} {op} {value}` asks \
                                     for something the service's spans do not carry"
                                ));
                            }
                        }
                    }
                }
            }
            other => problems.push(format!(
                "panel {title:?}: unexpected data source type {other:?}"
            )),
        }
    }
    // What the dashboard is for.
    for label in [rideshare::REGION_LABEL, rideshare::VEHICLE_LABEL] {
        if !grouped_by.contains(label) {
            problems.push(format!("no CPU-over-time panel grouped by {label}"));
        }
    }
    let flame_vehicles = flamegraph_values
        .get(rideshare::VEHICLE_LABEL)
        .cloned()
        .unwrap_or_default();
    for v in &vehicles {
        if !flame_vehicles.contains(*v) {
            problems.push(format!("no flame graph for vehicle {v:?}"));
        }
    }
    let flame_regions = flamegraph_values
        .get(rideshare::REGION_LABEL)
        .cloned()
        .unwrap_or_default();
    for r in rideshare::REGIONS {
        if !flame_regions.contains(r) {
            problems.push(format!("no flame graph for region {r:?}"));
        }
    }
    if trace_tables == 0 {
        problems.push("no Tempo table of traces to open a span's profile from".into());
    }
    assert_no_problems(DASHBOARD, &problems);
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
    let mut build_stages = BTreeSet::new();
    for bin in &bins {
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
    for (stage, src, _) in &copied {
        if src.contains("/target/") && !src.contains("/target/release/") {
            problems.push(format!("{src} from stage {stage}: ship the release build"));
        }
    }

    for stage_name in &build_stages {
        let Some(stage) = dockerfile.stage(stage_name) else {
            problems.push(format!("COPY --from={stage_name}: no such stage"));
            continue;
        };
        // Every cargo build of that stage: release, locked, all binaries.
        let mut sources_copied: BTreeSet<String> = BTreeSet::new();
        let mut built_before_sources = false;
        let mut final_build_line = None;
        let mut touched_since_copy = false;
        for ins in &stage.instructions {
            match ins.keyword.as_str() {
                "COPY" | "ADD" => {
                    let (_, paths) = copy_args(&ins.args);
                    if let Some((_, sources)) = paths.split_last() {
                        for s in sources {
                            sources_copied.insert(normalize_rel(s));
                        }
                    }
                    touched_since_copy = false;
                }
                "RUN" if ins.args.contains("cargo build") => {
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
                        if !limited.is_empty()
                            || words.contains(&"-p")
                            || words.contains(&"--package")
                        {
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
                    let covers = |rel: &str| {
                        sources_copied
                            .iter()
                            .any(|s| s == "." || rel == s || rel.starts_with(&format!("{s}/")))
                    };
                    let all_sources = targets
                        .iter()
                        .filter(|(k, _, _)| matches!(k.as_str(), "lib" | "bin" | "custom-build"))
                        .all(|(_, _, rel)| covers(rel) || ins.args.contains(rel.as_str()));
                    let real_sources = targets
                        .iter()
                        .filter(|(k, _, _)| matches!(k.as_str(), "lib" | "bin" | "custom-build"))
                        .all(|(_, _, rel)| covers(rel));
                    if real_sources {
                        if built_before_sources
                            && !touched_since_copy
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
                        final_build_line = Some(ins.line);
                    } else if all_sources {
                        built_before_sources = true;
                    } else {
                        let missing: Vec<&String> = targets
                            .iter()
                            .filter(|(k, _, _)| {
                                matches!(k.as_str(), "lib" | "bin" | "custom-build")
                            })
                            .map(|(_, _, rel)| rel)
                            .filter(|rel| !covers(rel) && !ins.args.contains(rel.as_str()))
                            .collect();
                        problems.push(format!(
                            "{DOCKERFILE}:{}: cargo build runs without these target sources: {missing:?}",
                            ins.line
                        ));
                    }
                }
                "RUN" if ins.args.contains("touch") => touched_since_copy = true,
                _ => {}
            }
        }
        if final_build_line.is_none() {
            problems.push(format!(
                "{DOCKERFILE}: stage {stage_name} never runs `cargo build --release --locked` over \
                 the copied sources"
            ));
        }
        let mut needed = vec!["Cargo.toml".to_owned(), "Cargo.lock".to_owned()];
        // Files the sources pull in at compile time (include_str! and friends) must be there too.
        needed.extend(included_files(Path::new(ROOT), "src"));
        for needed in needed {
            let covered = sources_copied
                .iter()
                .any(|s| s == "." || *s == needed || needed.starts_with(&format!("{s}/")));
            if !covered {
                problems.push(format!(
                    "{DOCKERFILE}: stage {stage_name} does not copy {needed}, which the build needs"
                ));
            }
        }
    }

    // The image runs the service by default, and the binaries it names exist.
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
        let argv = stack.compose.argv(&app, &dockerfile);
        match argv.first() {
            Some(p) if in_image.contains(p) => {}
            other => problems.push(format!(
                "{COMPOSE_FILE}: {app} runs {other:?}, which is not a binary the image has ({in_image:?})"
            )),
        }
    }
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
    assert_no_problems(DOCKERFILE, &problems);
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
    let host = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        })
        .unwrap_or_else(|| "x86_64-unknown-linux-gnu".into());
    let meta = cargo_metadata(&["--locked", "--filter-platform", &host]);
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

/// Repository-relative paths of the files `include_str!`/`include_bytes!` pull into the sources
/// under `dir` (relative paths only, as the compiler resolves them: from the including file).
fn included_files(root: &Path, dir: &str) -> Vec<String> {
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

/// `*` and `?` within one path segment, `**` across segments.
fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) if p.get(1) == Some(&b'*') => {
                let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            (Some(b'*'), _) => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != b'/')
                .any(|i| go(&p[1..], &t[i..])),
            (Some(b'?'), Some(c)) if *c != b'/' => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// The parsers above, on known input, so a check cannot pass because a parser saw nothing.

#[test]
fn parsers_read_what_they_are_given() {
    let p = parse_port_mapping(&Value::String("127.0.0.1:3000:3000".into()));
    assert_eq!(
        (p.host_ip.as_deref(), p.target),
        (Some("127.0.0.1"), Some(3000))
    );
    let p = parse_port_mapping(&Value::String("3000:3000".into()));
    assert_eq!((p.host_ip, p.target), (None, Some(3000)));
    let p = parse_port_mapping(&Value::String("[::1]:4040:4040/tcp".into()));
    assert_eq!((p.host_ip.as_deref(), p.target), (Some("::1"), Some(4040)));
    assert_eq!(
        split_tag("grafana/tempo:2.10.8"),
        ("grafana/tempo", Some("2.10.8"))
    );
    assert_eq!(
        split_tag("localhost:5000/rideshare"),
        ("localhost:5000/rideshare", None)
    );
    assert_eq!(non_root_uid("10001:10001"), Ok(10001));
    assert!(non_root_uid("0").is_err() && non_root_uid("root").is_err());
    assert_eq!(
        parse_label_selector(r#"{service_name="a", region=~"x|y"}"#).unwrap(),
        vec![
            ("service_name".into(), "=".into(), "a".into()),
            ("region".into(), "=~".into(), "x|y".into())
        ]
    );
    assert_eq!(
        traceql_conditions(r#"{resource.service.name="a" && name="GET /car" && span.x != nil}"#)
            .unwrap(),
        vec![
            ("resource.service.name".into(), "=".into(), "a".into()),
            ("name".into(), "=".into(), "GET /car".into()),
            ("span.x".into(), "!=".into(), "nil".into()),
        ]
    );
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
    assert!(glob_match("**/*.rs.bk", "src/a.rs.bk") && !glob_match("target", "src"));
    assert!(glob_match("src*", "src") && !glob_match("*.rs", "src/main.rs"));
    assert_eq!(
        flag_value(&["x".into(), "--duration".into(), "0s".into()], "-duration").as_deref(),
        Some("0s")
    );
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
