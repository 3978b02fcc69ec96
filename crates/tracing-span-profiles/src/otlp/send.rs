//! Sending one encoded `ExportProfilesServiceRequest`, over OTLP/HTTP (gzip) or gRPC, and what
//! its answer means for retrying, as the OTLP exporter spec has it.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::profiles::v1development::profiles_service_client::ProfilesServiceClient;
use prost::Message;
use tonic::transport::Channel;
use url::Url;

use super::{OtlpProfilesConfig, OtlpProtocol};
use crate::config::redact;
use crate::push::encode::gzip;
use crate::push::failure::{Failure, Outcome, send_http, timed_out};

/// An OTLP profiles client for one endpoint.
pub(crate) struct Exporter {
    transport: Transport,
    headers: Vec<(String, String)>,
    pub(crate) timeout: Duration,
    pub(crate) shown: String,
}

enum Transport {
    Http { client: reqwest::Client, url: Url },
    Grpc(ProfilesServiceClient<Channel>),
}

impl Exporter {
    /// A client for `config`'s endpoint; a gRPC channel connects at the first export, so a
    /// backend that is down at start costs nothing until then.
    pub(crate) fn new(
        config: &OtlpProfilesConfig,
        client: reqwest::Client,
    ) -> Result<Self, String> {
        let url = config.endpoint_url().map_err(|e| e.to_string())?;
        let transport = match config.protocol {
            OtlpProtocol::HttpProtobuf => Transport::Http { client, url },
            OtlpProtocol::Grpc => {
                let channel = Channel::from_shared(url.to_string())
                    .map_err(|e| format!("OTLP profiles endpoint: {e}"))?
                    .connect_lazy();
                Transport::Grpc(ProfilesServiceClient::new(channel))
            }
        };
        Ok(Exporter {
            transport,
            headers: config.headers.clone(),
            timeout: config.timeout,
            shown: redact(&config.endpoint),
        })
    }

    /// The body as this exporter's transport sends it: gzip for HTTP, plain for gRPC.
    pub(crate) fn body(&self, request: &ExportProfilesServiceRequest) -> Option<Bytes> {
        let encoded = request.encode_to_vec();
        match self.transport {
            Transport::Grpc(_) => Some(Bytes::from(encoded)),
            Transport::Http { .. } => gzip(&encoded),
        }
    }

    pub(crate) async fn send(&self, body: Bytes, timeout: Duration) -> Outcome {
        match &self.transport {
            Transport::Http { client, url } => self.send_http(client, url, body, timeout).await,
            Transport::Grpc(client) => self.send_grpc(client.clone(), body, timeout).await,
        }
    }

    async fn send_http(
        &self,
        client: &reqwest::Client,
        url: &Url,
        body: Bytes,
        timeout: Duration,
    ) -> Outcome {
        let mut request = client
            .post(url.clone())
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "gzip")
            .timeout(timeout)
            .body(body);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        send_http(request, timeout, otlp_retryable).await
    }

    async fn send_grpc(
        &self,
        mut client: ProfilesServiceClient<Channel>,
        body: Bytes,
        timeout: Duration,
    ) -> Outcome {
        let Ok(message) = ExportProfilesServiceRequest::decode(body) else {
            return Outcome::Rejected(Failure::new("encoding", "undecodable request".into()));
        };
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        for (name, value) in &self.headers {
            let name = name.to_ascii_lowercase();
            if let (Ok(key), Ok(value)) = (
                tonic::metadata::MetadataKey::from_bytes(name.as_bytes()),
                value.parse(),
            ) {
                request.metadata_mut().insert(key, value);
            }
        }
        match tokio::time::timeout(timeout, client.export(request)).await {
            Err(_) => timed_out(timeout),
            Ok(Ok(_)) => Outcome::Delivered,
            Ok(Err(status)) => grpc_failure(&status),
        }
    }
}

/// The OTLP spec: only these HTTP statuses are worth sending again.
fn otlp_retryable(status: u16) -> bool {
    [429, 502, 503, 504].contains(&status)
}

/// The OTLP spec's retryable codes; RESOURCE_EXHAUSTED only with the server's `RetryInfo`, which
/// this client does not read, so it is not retried.
fn grpc_failure(status: &tonic::Status) -> Outcome {
    use tonic::Code;
    let kind = format!("grpc {:?}", status.code());
    let cause = format!("gRPC {:?}: {}", status.code(), status.message());
    let failure = Failure::new(kind, cause);
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Outcome::Retry(failure),
        _ => Outcome::Rejected(failure),
    }
}
