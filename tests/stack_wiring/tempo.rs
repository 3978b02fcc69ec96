//! otel/tempo.yaml: the ports Tempo listens on (its API and the OTLP receivers), read from the
//! file compose really mounts and runs Tempo with, and reachable from the other containers.

use serde_json::Value;

use crate::compose::{COMPOSE_FILE, Compose};
use crate::dockerfile::Dockerfile;
use crate::stack::{Speaks, flag_value};
use crate::yaml;

pub(crate) const TEMPO_CONFIG: &str = "otel/tempo.yaml";

pub(crate) struct TempoConfig {
    pub(crate) http_port: u16,
    pub(crate) receivers: Vec<(u16, Speaks)>,
}

impl TempoConfig {
    /// Reads otel/tempo.yaml, after checking the service really runs with it.
    pub(crate) fn for_service(
        compose: &Compose,
        name: &str,
        dockerfile: &Dockerfile,
    ) -> TempoConfig {
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

    pub(crate) fn parse(doc: &Value) -> TempoConfig {
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
