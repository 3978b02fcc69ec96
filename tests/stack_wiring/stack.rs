//! The stack as a network: who listens where, speaking what. Checks that every address an app,
//! a health check or a published port names reaches a service listening there with that protocol.

use std::collections::{BTreeMap, BTreeSet};

use crate::compose::{COMPOSE_FILE, Compose, Role};
use crate::dockerfile::Dockerfile;
use crate::tempo::{TEMPO_CONFIG, TempoConfig};
use crate::{assert_no_problems, strings, yaml};

/// The rideshare service's default listen address (`RIDESHARE_LISTEN_ADDR`).
pub(crate) const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:5000";
/// What `rideshare healthcheck` asks when given no `--url`.
const DEFAULT_HEALTHCHECK_URL: &str = "http://127.0.0.1:5000/";
/// Pyroscope's HTTP port unless `-server.http-listen-port` says otherwise.
const PYROSCOPE_DEFAULT_PORT: u16 = 4040;
/// Grafana's HTTP port unless `GF_SERVER_HTTP_PORT` says otherwise.
const GRAFANA_DEFAULT_PORT: u16 = 3000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Speaks {
    /// The rideshare HTTP API.
    Rideshare,
    Pyroscope,
    /// Tempo's query API (Grafana's data source).
    TempoApi,
    OtlpGrpc,
    OtlpHttp,
    Grafana,
}

pub(crate) struct Stack {
    pub(crate) compose: Compose,
    pub(crate) dockerfile: Dockerfile,
    pub(crate) roles: BTreeMap<String, Role>,
    /// service -> port -> protocol spoken there.
    listeners: BTreeMap<String, BTreeMap<u16, Speaks>>,
}

impl Stack {
    pub(crate) fn load() -> Stack {
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

    pub(crate) fn with_role(&self, role: Role) -> Vec<String> {
        self.roles
            .iter()
            .filter(|(_, r)| **r == role)
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub(crate) fn apps(&self) -> Vec<String> {
        self.roles
            .iter()
            .filter(|(_, r)| matches!(r, Role::Region | Role::LoadGenerator))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Checks that `url` (configured in `setting`) names a compose service and a port of it that
    /// speaks `speaks`.
    pub(crate) fn check_url(
        &self,
        who: &str,
        setting: &str,
        url: &str,
        speaks: Speaks,
    ) -> Result<(), String> {
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
    pub(crate) fn region_service_name(&self) -> String {
        let names: BTreeSet<String> = self
            .with_role(Role::Region)
            .iter()
            .map(|r| {
                effective_service_name(
                    &self.compose.env(r),
                    rideshare::vocabulary::DEFAULT_SERVICE_NAME,
                )
            })
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
pub(crate) fn flag_value(argv: &[String], flag: &str) -> Option<String> {
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
            Some(r) if !rideshare::vocabulary::REGIONS.contains(&r.as_str()) => {
                problems.push(format!(
                    "{svc}: REGION={r:?} is not one of {:?}",
                    rideshare::vocabulary::REGIONS
                ))
            }
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
    for r in rideshare::vocabulary::REGIONS {
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
        check_profiles_reach_pyroscope(&stack, &app, &env, &mut problems);
        check_traces_reach_tempo(&stack, &app, &env, &mut problems);
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

/// Profiles: `app` pushes to a Pyroscope port, unless profiling is off.
fn check_profiles_reach_pyroscope(
    stack: &Stack,
    app: &str,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) {
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
        if let Err(e) = stack.check_url(app, "PYROSCOPE_SERVER_ADDRESS", addr, Speaks::Pyroscope) {
            problems.push(e);
        }
    }
}

/// Traces: the variables as the OTLP exporter spec (and the service) read them.
fn check_traces_reach_tempo(
    stack: &Stack,
    app: &str,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) {
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
            return;
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
        app,
        &format!("{setting} with protocol {protocol}"),
        &endpoint,
        speaks,
    ) {
        problems.push(e);
    }
    check_otlp_endpoint_path(app, setting, &endpoint, speaks, problems);
}

/// The path of an OTLP endpoint, as the exporter uses it (as is, or with /v1/traces appended).
fn check_otlp_endpoint_path(
    app: &str,
    setting: &str,
    endpoint: &str,
    speaks: Speaks,
    problems: &mut Vec<String>,
) {
    let Ok(url) = url::Url::parse(endpoint) else {
        return;
    };
    let path = url.path().trim_end_matches('/');
    let signal_specific = setting == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    match speaks {
        Speaks::OtlpHttp if signal_specific && path != "/v1/traces" => problems.push(format!(
            "{app}: {setting}={endpoint:?} is used as is: its path must be /v1/traces"
        )),
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
    let mut problems = Vec::new();
    check_health_checks(&stack, &mut problems);
    check_start_order(&stack, &mut problems);
    assert_no_problems(COMPOSE_FILE, &problems);
}

/// Every service that serves something has a health check its image can run.
fn check_health_checks(stack: &Stack, problems: &mut Vec<String>) {
    let image_bins: BTreeSet<String> = stack
        .dockerfile
        .copied_from_stages()
        .into_iter()
        .map(|(_, _, dest)| dest)
        .collect();
    for (svc, role) in &stack.roles {
        let hc = stack.compose.service(svc).get("healthcheck");
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
            check_region_health_check(stack, svc, &test, &image_bins, problems);
        }
    }
}

/// A region's health check is `rideshare healthcheck`, asking the port the region listens on.
fn check_region_health_check(
    stack: &Stack,
    svc: &str,
    test: &[String],
    image_bins: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
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
    let url = flag_value(test, "-url").unwrap_or_else(|| DEFAULT_HEALTHCHECK_URL.into());
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

/// Apps start after their backends; health-checked backends must be healthy first.
fn check_start_order(stack: &Stack, problems: &mut Vec<String>) {
    let compose = &stack.compose;
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

/// This module's parsers on known input (part of `parsers_read_what_they_are_given`).
pub(crate) fn read_known_input() {
    assert_eq!(
        flag_value(&["x".into(), "--duration".into(), "0s".into()], "-duration").as_deref(),
        Some("0s")
    );
}
