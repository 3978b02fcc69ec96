//! Pyroscope's push endpoint (`push.v1.PusherService/Push`, Connect protocol), accepting exactly
//! what pyroscope-rs sends: a gzip'd protobuf `PushRequest` whose raw samples are pprof payloads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use prost::Message;
use pyroscope::encode::r#gen::push::PushRequest;

use super::behaviour::{Behaviour, Refusal, connect_code};
use super::http::respond;
use super::receiver::ReceiverState;
use super::{CapturedProfile, Endpoint, RequestHeaders, gzip, pprof};

/// What Connect calls its unary protobuf encoding; the only one pyroscope-rs uses.
const CONNECT_PROTO: &str = "application/proto";

/// `POST /push.v1.PusherService/Push`. Success is an empty `PushResponse`; errors are Connect's
/// JSON error bodies, as the Pyroscope server sends them.
pub(super) async fn push(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers = RequestHeaders::from_map(&headers);
    let result = receive(&state, &headers, &body).await;
    respond(result, CONNECT_PROTO, Vec::new(), |refusal| {
        ("application/json", connect_error(refusal))
    })
}

async fn receive(
    state: &ReceiverState,
    headers: &RequestHeaders,
    body: &[u8],
) -> Result<(), Refusal> {
    state.admit(Endpoint::PyroscopePush, headers).await?;
    let profiles = decode(headers, body)
        .inspect_err(|refusal| state.reject(Endpoint::PyroscopePush, headers, refusal))?;
    state.capture.record_profiles(profiles);
    Ok(())
}

/// All or nothing: one bad raw sample refuses the whole push, so a test never sees half of it.
fn decode(headers: &RequestHeaders, body: &[u8]) -> Result<Vec<CapturedProfile>, Refusal> {
    let media_type = headers.media_type();
    if media_type.as_deref() != Some(CONNECT_PROTO) {
        return Err(Refusal::new(
            415,
            format!("expected Content-Type {CONNECT_PROTO}, got {media_type:?}"),
        ));
    }
    let body = gzip::decode_body(headers.content_encoding.as_deref(), body)?;
    let request = PushRequest::decode(&*body)
        .map_err(|e| Refusal::new(400, format!("body is not a PushRequest: {e}")))?;
    let received_at = SystemTime::now();
    let mut profiles = Vec::new();
    for series in request.series {
        let series_labels: BTreeMap<String, String> = series
            .labels
            .into_iter()
            .map(|label| (label.name, label.value))
            .collect();
        for sample in series.samples {
            let (raw, profile) = pprof::decode(&sample.raw_profile)
                .map_err(|e| Refusal::new(400, format!("sample {:?}: {e}", sample.id)))?;
            profiles.push(CapturedProfile {
                series_labels: series_labels.clone(),
                sample_id: sample.id,
                headers: headers.clone(),
                raw_pprof: Arc::from(raw),
                pprof: Arc::new(profile),
                received_at,
            });
        }
    }
    Ok(profiles)
}

fn connect_error(refusal: &Refusal) -> Vec<u8> {
    serde_json::json!({
        "code": connect_code(Behaviour::grpc_code(refusal.status)),
        "message": refusal.reason,
    })
    .to_string()
    .into_bytes()
}
