//! Where one copy of every profile goes: Pyroscope's push API, or an OTLP profiles endpoint.
//! Each encodes the same pprof profile its own way and judges its own answers.

use std::time::Duration;

use bytes::Bytes;
use pyroscope::encode::r#gen::google::Profile;
use url::Url;

use super::encode::push_body;
use super::failure::{Outcome, pyroscope_retryable, send_http};
use super::target::PushTarget;
use crate::labels::TRACE_ID_LABEL;

/// One destination of the profiles.
pub(crate) enum Destination {
    Pyroscope {
        target: PushTarget,
        client: reqwest::Client,
        url: Url,
        shown: String,
    },
    #[cfg(feature = "otlp")]
    Otlp {
        exporter: crate::otlp::Exporter,
        service_name: String,
        resource: Vec<(String, String)>,
    },
}

impl Destination {
    pub(crate) fn pyroscope(target: PushTarget, client: reqwest::Client) -> Self {
        Destination::Pyroscope {
            url: target.push_url(),
            shown: target.shown_server(),
            target,
            client,
        }
    }

    /// What its totals are called.
    pub(crate) fn id(&self) -> &'static str {
        match self {
            Destination::Pyroscope { .. } => "pyroscope",
            #[cfg(feature = "otlp")]
            Destination::Otlp { .. } => "otlp",
        }
    }

    /// What warnings call it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Destination::Pyroscope { .. } => "Pyroscope push",
            #[cfg(feature = "otlp")]
            Destination::Otlp { .. } => "OTLP profile export",
        }
    }

    /// Its address for messages, without credentials.
    pub(crate) fn shown(&self) -> &str {
        match self {
            Destination::Pyroscope { shown, .. } => shown,
            #[cfg(feature = "otlp")]
            Destination::Otlp { exporter, .. } => &exporter.shown,
        }
    }

    /// The longest one attempt may take: never past the next upload.
    pub(crate) fn timeout(&self, push_timeout: Duration) -> Duration {
        match self {
            Destination::Pyroscope { .. } => push_timeout,
            #[cfg(feature = "otlp")]
            Destination::Otlp { exporter, .. } => exporter.timeout.min(push_timeout),
        }
    }

    /// `profile` as this destination's request body.
    pub(crate) fn encode(&self, profile: &Profile, profile_type: &str) -> Option<Bytes> {
        match self {
            Destination::Pyroscope { target, .. } => {
                if target.trace_id_label {
                    push_body(target, profile, profile_type)
                } else {
                    push_body(
                        target,
                        &without_label(profile, TRACE_ID_LABEL),
                        profile_type,
                    )
                }
            }
            #[cfg(feature = "otlp")]
            Destination::Otlp {
                exporter,
                service_name,
                resource,
            } => {
                let about = crate::otlp::Described {
                    service_name,
                    resource,
                };
                exporter.body(&crate::otlp::to_request(profile, &about))
            }
        }
    }

    pub(crate) async fn send(&self, body: Bytes, timeout: Duration) -> Outcome {
        match self {
            Destination::Pyroscope {
                target,
                client,
                url,
                ..
            } => push(client, url, target, body, timeout).await,
            #[cfg(feature = "otlp")]
            Destination::Otlp { exporter, .. } => exporter.send(body, timeout).await,
        }
    }
}

/// `profile` without the label `key` on any sample.
fn without_label(profile: &Profile, key: &str) -> Profile {
    let Some(key) = profile.string_table.iter().position(|s| s == key) else {
        return profile.clone();
    };
    let mut profile = profile.clone();
    for sample in &mut profile.sample {
        sample.label.retain(|l| l.key != key as i64);
    }
    profile
}

async fn push(
    client: &reqwest::Client,
    url: &Url,
    target: &PushTarget,
    body: Bytes,
    timeout: Duration,
) -> Outcome {
    let mut request = client
        .post(url.clone())
        .header("Content-Type", "application/proto")
        .header("Content-Encoding", "gzip")
        .timeout(timeout)
        .body(body);
    if let Some((user, password)) = &target.basic_auth {
        request = request.basic_auth(user, Some(&password.0));
    }
    if let Some(tenant) = &target.tenant_id {
        request = request.header("X-Scope-OrgID", tenant);
    }
    send_http(request, timeout, pyroscope_retryable).await
}
