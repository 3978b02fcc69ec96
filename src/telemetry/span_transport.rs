//! Sending an encoded `ExportTraceServiceRequest` over OTLP/HTTP (protobuf) or OTLP/gRPC, with
//! the OTLP exporter spec's retries: throttling and transient failures are retried, after the
//! server's `Retry-After` when it gives one, within the export timeout.
//!
//! The request arrives already encoded (see `span_encode`): over HTTP it is the body; over gRPC
//! a codec writes it into the frame as it is.

use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use url::Url;

use crate::config::OtlpProtocol;

const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// The exporter, its language and version, as the OTLP exporter spec asks of a `User-Agent`.
const USER_AGENT: &str = concat!(
    "OTel-OTLP-Exporter-Rust-rideshare/",
    env!("CARGO_PKG_VERSION")
);
/// The spec's recommended retry policy, as opentelemetry-otlp has it: 3 retries, from 100 ms
/// doubling to 1.6 s, plus up to 100 ms of jitter.
const RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_millis(1600);
const MAX_JITTER_MS: u64 = 100;
/// Most of an error answer's body read (and dropped) so the connection can be reused.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Why one attempt failed, and whether (and when) to try again.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong, for the warning (no URL, no header).
    pub cause: String,
    retry: Retry,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Retry {
    No,
    /// After the backoff.
    Backoff,
    /// After at least this long (the server's `Retry-After`).
    After(Duration),
}

/// An OTLP traces client for one endpoint, owning the runtime its I/O runs on: it lives on the
/// export thread, and its sends block that thread only.
pub struct TraceClient {
    /// Always `Some` but in `drop`.
    runtime: Option<tokio::runtime::Runtime>,
    transport: Transport,
    headers: HeaderMap,
    timeout: Duration,
}

enum Transport {
    Http { client: reqwest::Client, url: Url },
    Grpc(tonic::client::Grpc<Channel>),
}

impl TraceClient {
    /// A client for `endpoint` (for HTTP the whole URL). A gRPC channel connects at the first
    /// export, so a backend that is down at start costs nothing until then.
    pub fn new(
        protocol: OtlpProtocol,
        endpoint: &Url,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the span export runtime: {e}"))?;
        let transport = match protocol {
            OtlpProtocol::HttpProtobuf => Transport::Http {
                client: reqwest::Client::builder()
                    .user_agent(USER_AGENT)
                    .build()
                    .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?,
                url: endpoint.clone(),
            },
            OtlpProtocol::Grpc => {
                let _runtime = runtime.enter();
                let channel = Channel::from_shared(endpoint.to_string())
                    .map_err(|e| format!("bad OTLP gRPC endpoint: {e}"))?
                    .user_agent(USER_AGENT)
                    .map_err(|e| format!("bad OTLP gRPC user agent: {e}"))?
                    .connect_lazy();
                Transport::Grpc(tonic::client::Grpc::new(channel))
            }
        };
        Ok(TraceClient {
            runtime: Some(runtime),
            transport,
            headers,
            timeout,
        })
    }

    /// Sends `request`, retrying as the spec says, all within the export timeout. Blocking.
    pub fn send(&mut self, request: Bytes) -> Result<(), Failure> {
        let start = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut retries = 0;
        loop {
            let left = self.timeout.saturating_sub(start.elapsed());
            let failure = match self.attempt(request.clone(), left) {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            let wait = match failure.retry {
                Retry::No => return Err(failure),
                Retry::Backoff => backoff + jitter(),
                Retry::After(at_least) => backoff.max(at_least) + jitter(),
            };
            let left = self.timeout.saturating_sub(start.elapsed());
            if retries == RETRIES || wait >= left {
                return Err(failure);
            }
            retries += 1;
            std::thread::sleep(wait);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn attempt(&mut self, request: Bytes, timeout: Duration) -> Result<(), Failure> {
        let TraceClient {
            runtime,
            transport,
            headers,
            ..
        } = self;
        let attempt = async {
            match transport {
                Transport::Http { client, url } => {
                    send_http(client, url, headers, request, timeout).await
                }
                Transport::Grpc(client) => send_grpc(client, headers, request, timeout).await,
            }
        };
        let runtime = runtime
            .as_ref()
            .expect("the runtime lives as long as the client");
        match runtime.block_on(async { tokio::time::timeout(timeout, attempt).await }) {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure {
                cause: format!("no answer within {timeout:?}"),
                retry: Retry::Backoff,
            }),
        }
    }
}

impl Drop for TraceClient {
    /// Without blocking, so the client may also be dropped on an async thread (the one that
    /// built it, if the export thread could not start): a runtime dropped the usual way there
    /// panics.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn send_http(
    client: &reqwest::Client,
    url: &Url,
    headers: &HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<(), Failure> {
    let response = client
        .post(url.clone())
        .headers(headers.clone())
        .header("Content-Type", "application/x-protobuf")
        .timeout(timeout)
        .body(body)
        .send()
        .await
        .map_err(|e| Failure {
            cause: describe(e, timeout),
            retry: Retry::Backoff,
        })?;
    let status = response.status();
    if status.is_success() {
        drain(response).await;
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(retry_after);
    drain(response).await;
    let retry = match (status.as_u16(), retry_after) {
        (429 | 502 | 503 | 504, Some(after)) => Retry::After(after),
        (429 | 502 | 503 | 504, None) => Retry::Backoff,
        _ => Retry::No,
    };
    Err(Failure {
        cause: format!("HTTP {status}"),
        retry,
    })
}

/// What went wrong sending, with its causes (reqwest's own message is only "error sending
/// request"); never the URL, which may carry credentials.
fn describe(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {timeout:?}");
    }
    let error = error.without_url();
    with_causes(error.to_string(), &error)
}

/// `text`, then each cause below `error`, as "text: cause: cause".
fn with_causes(mut text: String, error: &dyn std::error::Error) -> String {
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Reads and drops up to [`MAX_ERROR_BODY`] of an answer, so its connection can serve the next
/// export; a longer body closes the connection instead.
async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while read < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            _ => return,
        }
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

async fn send_grpc(
    client: &mut tonic::client::Grpc<Channel>,
    headers: &HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<(), Failure> {
    let mut request = tonic::Request::new(body);
    request.set_timeout(timeout);
    *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers.clone());
    client.ready().await.map_err(|e| Failure {
        cause: with_causes(format!("gRPC channel: {e}"), &e),
        retry: Retry::Backoff,
    })?;
    let path = PathAndQuery::from_static(GRPC_PATH);
    match client.unary(request, path, RawRequest).await {
        Ok(_) => Ok(()),
        Err(status) => Err(grpc_failure(&status)),
    }
}

/// The spec's retryable gRPC codes; `RESOURCE_EXHAUSTED` only with the server's `RetryInfo`,
/// which this client does not read, so it is not retried.
fn grpc_failure(status: &tonic::Status) -> Failure {
    use tonic::Code;
    let retry = match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Retry::Backoff,
        _ => Retry::No,
    };
    let text = format!("gRPC {:?}: {}", status.code(), status.message());
    Failure {
        cause: with_causes(text, status),
        retry,
    }
}

fn jitter() -> Duration {
    Duration::from_millis(rand::random_range(0..=MAX_JITTER_MS))
}

/// The OTLP headers, checked once: a name or value HTTP cannot carry is refused at start.
pub fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let key = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("{name:?} is not a valid header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header {name:?} is not a valid header value"))?;
        map.insert(key, value);
    }
    Ok(map)
}

/// Writes an already-encoded request into the gRPC frame as it is and decodes the answer.
#[derive(Debug, Clone, Copy)]
struct RawRequest;

impl Codec for RawRequest {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawRequest;
    type Decoder = RawRequest;

    fn encoder(&mut self) -> Self::Encoder {
        RawRequest
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawRequest
    }
}

impl Encoder for RawRequest {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawRequest {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        let answer = ExportTraceServiceResponse::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|e| tonic::Status::internal(format!("undecodable answer: {e}")))?;
        Ok(Some(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("3"), Some(Duration::from_secs(3)));
        let later = SystemTime::now() + Duration::from_secs(120);
        let after = retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            (Duration::from_secs(118)..=Duration::from_secs(120)).contains(&after),
            "{after:?}"
        );
        assert_eq!(retry_after("soon"), None);
    }

    /// Built and dropped on an async thread (as when the export thread cannot start), the client
    /// neither blocks nor panics.
    #[tokio::test]
    async fn a_client_dropped_on_an_async_thread_does_not_panic() {
        let url = Url::parse("http://127.0.0.1:9/v1/traces").unwrap();
        for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
            let client = TraceClient::new(protocol, &url, HeaderMap::new(), Duration::from_secs(1));
            drop(client.unwrap());
        }
    }

    #[test]
    fn headers_that_http_cannot_carry_are_refused() {
        let ok = header_map(&[("X-Scope-OrgID".into(), "tenant-7".into())]).unwrap();
        assert_eq!(ok.get("x-scope-orgid").unwrap(), "tenant-7");
        assert!(header_map(&[("bad name".into(), "v".into())]).is_err());
        assert!(header_map(&[("x".into(), "line\nbreak".into())]).is_err());
    }
}
