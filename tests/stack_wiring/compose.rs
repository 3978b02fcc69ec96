//! docker-compose.yml as a model (services, their roles, environment, ports, mounts), and the
//! checks on the file itself: valid against the Compose Specification, pinned images, no root.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::dockerfile::{DOCKERFILE, Dockerfile};
use crate::stack::Stack;
use crate::{assert_no_problems, basename, normalize_rel, path, scalar, strings, yaml};

pub(crate) const COMPOSE_FILE: &str = "docker-compose.yml";
/// In CI the repository is cloned with `shared/` beside it.
const COMPOSE_SCHEMA: &str = "../shared/schemas/compose-spec.json";

pub(crate) struct Compose {
    doc: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Region,
    LoadGenerator,
    Pyroscope,
    Tempo,
    Grafana,
}

#[derive(Debug)]
pub(crate) struct PortMapping {
    pub(crate) raw: String,
    pub(crate) host_ip: Option<String>,
    pub(crate) target: Option<u16>,
}

impl Compose {
    pub(crate) fn load() -> Compose {
        Compose {
            doc: yaml(COMPOSE_FILE),
        }
    }

    pub(crate) fn services(&self) -> BTreeMap<String, &Value> {
        self.doc["services"]
            .as_object()
            .unwrap_or_else(|| panic!("{COMPOSE_FILE} has no `services` mapping"))
            .iter()
            .map(|(k, v)| (k.clone(), v))
            .collect()
    }

    pub(crate) fn service(&self, name: &str) -> &Value {
        self.doc["services"]
            .get(name)
            .unwrap_or_else(|| panic!("{COMPOSE_FILE} has no service {name:?}"))
    }

    pub(crate) fn env(&self, name: &str) -> BTreeMap<String, String> {
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

    pub(crate) fn image(&self, name: &str) -> Option<String> {
        self.service(name).get("image").and_then(scalar)
    }

    pub(crate) fn is_built(&self, name: &str) -> bool {
        self.service(name).get("build").is_some()
    }

    /// The program and arguments the container runs: compose's entrypoint/command over the
    /// Dockerfile's ENTRYPOINT/CMD.
    pub(crate) fn argv(&self, name: &str, dockerfile: &Dockerfile) -> Vec<String> {
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

    pub(crate) fn role(&self, name: &str, dockerfile: &Dockerfile) -> Role {
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
                 say in tests/stack_wiring/ (stack.rs, compose.rs) which ports it listens on and as \
                 which user it runs"
            ),
        }
    }

    pub(crate) fn ports(&self, name: &str) -> Vec<PortMapping> {
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
    pub(crate) fn mount_target(&self, name: &str, rel: &str) -> Option<String> {
        self.volumes(name)
            .into_iter()
            .find(|(src, _)| normalize_rel(src) == normalize_rel(rel))
            .map(|(_, dst)| dst)
    }
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
pub(crate) fn image_repository(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let (repo, _) = split_tag(no_digest);
    repo.trim_start_matches("docker.io/").to_owned()
}

/// Splits `name:tag` where the tag is after the last `/` (a registry may have a `:port`).
pub(crate) fn split_tag(image: &str) -> (&str, Option<&str>) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], Some(&image[slash + i + 1..])),
        None => (image, None),
    }
}

/// The users the pulled images run as when compose does not say (from their Dockerfiles). None
/// runs as root; `user:` is still set in docker-compose.yml, to the same ids, so the compose file
/// says it outright and volume ownership stays what the image prepared.
const IMAGE_DEFAULT_USERS: [(&str, &str); 3] = [
    ("grafana/pyroscope", "10001"), // USER pyroscope (uid 10001), owns /data
    ("grafana/tempo", "10001"),     // USER 10001:10001
    ("grafana/grafana", "472"),     // uid 472, group 0
];

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

/// This module's parsers on known input (part of `parsers_read_what_they_are_given`).
pub(crate) fn read_known_input() {
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
}
