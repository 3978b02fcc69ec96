//! The push request the Pyroscope SDKs send: a gzipped `PushRequest` holding one pprof profile.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use pyroscope::backend::{ReportBatch, ReportData};
use pyroscope::encode::r#gen::push::{PushRequest, RawProfileSeries, RawSample};
use pyroscope::encode::r#gen::types::LabelPair;

use super::target::PushTarget;

/// One report period's profile, from `from` to `until`, as a push body.
pub(crate) fn encode(
    target: &PushTarget,
    batch: ReportBatch,
    from: SystemTime,
    until: SystemTime,
) -> Option<Bytes> {
    let nanos = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let raw_profile = match batch.data {
        ReportData::Reports(reports) => pyroscope::encode::pprof::encode(
            &reports,
            target.sample_rate,
            nanos(from),
            nanos(until).saturating_sub(nanos(from)),
        )
        .encode_to_vec(),
        ReportData::RawPprof(bytes) => bytes,
    };
    let mut labels = vec![label("__name__", &batch.profile_type)];
    labels.extend(target.labels.iter().map(|(k, v)| label(k, v)));
    labels.push(label("otel.scope.name", "com.grafana.pyroscope/rust"));
    labels.push(label("process.runtime.name", "rust"));
    let request = PushRequest {
        series: vec![RawProfileSeries {
            labels,
            samples: vec![RawSample {
                raw_profile,
                id: uuid::Uuid::new_v4().to_string(),
            }],
        }],
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &request.encode_to_vec()).ok()?;
    gz.finish().ok().map(Bytes::from)
}

fn label(name: &str, value: &str) -> LabelPair {
    LabelPair {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}
