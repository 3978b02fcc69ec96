//! How a receiver answers, switchable while it runs, so one test can walk a client through a
//! healthy backend, an outage and a recovery without restarting anything.

use serde::Serialize;
use tonic::Code;

use super::RequestHeaders;

/// What a receiver does with the next request. Requests it does not accept leave no data in the
/// [`Capture`](super::Capture); they are only counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub enum Behaviour {
    /// Store the data and answer success, like a healthy backend.
    #[default]
    Accept,
    /// Answer this HTTP status (gRPC: its usual code, see [`Behaviour::grpc_code`]) without
    /// storing anything: 500 for a broken backend, 429 for rate limiting, 401 for bad
    /// credentials. A 2xx here still stores nothing.
    Status(u16),
    /// Answer `status` with `Retry-After: retry_after_secs`, as a rate-limiting server or the
    /// proxy in front of one does (HTTP only; gRPC gets the code alone).
    Throttle { status: u16, retry_after_secs: u64 },
    /// Read the whole request, then never answer until the receiver shuts down (when the request
    /// gets a 503 / `Unavailable`), like a backend stuck behind a load balancer. Only the client's
    /// own timeout ends the wait.
    Stall,
    /// Answer 401 (gRPC `Unauthenticated`) unless the request carries exactly these credentials,
    /// as Grafana Cloud does; `None` parts are not checked.
    RequireAuth {
        /// The `user` and `password` of an expected `Authorization: Basic` header.
        basic: Option<(String, String)>,
        /// The expected `X-Scope-OrgID`.
        tenant: Option<String>,
    },
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Accept,
    Stall,
    Reject(Refusal),
}

/// A refused request: its HTTP status and the reason told to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub status: u16,
    pub reason: String,
    /// Sent as `Retry-After`, in seconds.
    pub retry_after_secs: Option<u64>,
}

impl Refusal {
    pub(super) fn new(status: u16, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
            retry_after_secs: None,
        }
    }

    pub(super) fn grpc_status(&self) -> tonic::Status {
        tonic::Status::new(Behaviour::grpc_code(self.status), self.reason.clone())
    }
}

impl Behaviour {
    pub(super) fn judge(&self, headers: &RequestHeaders) -> Verdict {
        match self {
            Behaviour::Accept => Verdict::Accept,
            Behaviour::Stall => Verdict::Stall,
            Behaviour::Status(status) => Verdict::Reject(Refusal::new(
                *status,
                format!("capture receiver set to answer {status}"),
            )),
            Behaviour::Throttle {
                status,
                retry_after_secs,
            } => Verdict::Reject(Refusal {
                retry_after_secs: Some(*retry_after_secs),
                ..Refusal::new(
                    *status,
                    format!(
                        "capture receiver set to answer {status}, retry after {retry_after_secs}s"
                    ),
                )
            }),
            Behaviour::RequireAuth { basic, tenant } => {
                if let Some((user, password)) = basic {
                    match headers.basic_credentials() {
                        Some((u, p)) if &u == user && &p == password => {}
                        Some(_) => return unauthorized("invalid basic credentials"),
                        None => return unauthorized("missing Authorization: Basic header"),
                    }
                }
                if let Some(tenant) = tenant {
                    match headers.scope_org_id.as_deref() {
                        Some(t) if t == tenant => {}
                        Some(t) => return unauthorized(format!("unknown tenant {t:?}")),
                        None => return unauthorized("missing X-Scope-OrgID header"),
                    }
                }
                Verdict::Accept
            }
        }
    }

    /// The gRPC code a gRPC backend would send where an HTTP one sends `status` (the usual
    /// HTTP/gRPC correspondence, so retry logic sees the same class of failure on both).
    pub fn grpc_code(status: u16) -> Code {
        match status {
            200..=299 => Code::Ok,
            400 => Code::InvalidArgument,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            408 | 504 => Code::DeadlineExceeded,
            409 => Code::Aborted,
            413 | 429 => Code::ResourceExhausted,
            415 | 501 => Code::Unimplemented,
            499 => Code::Cancelled,
            500 => Code::Internal,
            502 | 503 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }
}

fn unauthorized(reason: impl Into<String>) -> Verdict {
    Verdict::Reject(Refusal::new(401, reason))
}

/// The Connect protocol's name for a code, as Pyroscope puts it in its JSON error bodies.
pub(super) fn connect_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(auth: Option<&str>, tenant: Option<&str>) -> RequestHeaders {
        RequestHeaders {
            authorization: auth.map(str::to_owned),
            scope_org_id: tenant.map(str::to_owned),
            ..RequestHeaders::default()
        }
    }

    #[test]
    fn require_auth_checks_only_what_it_names() {
        let both = Behaviour::RequireAuth {
            basic: Some(("user".into(), "pass".into())),
            tenant: Some("team-a".into()),
        };
        // "user:pass"
        let good = with_auth(Some("Basic dXNlcjpwYXNz"), Some("team-a"));
        assert_eq!(both.judge(&good), Verdict::Accept);
        for bad in [
            with_auth(None, Some("team-a")),
            with_auth(Some("Basic dXNlcjpub3Bl"), Some("team-a")),
            with_auth(Some("Basic dXNlcjpwYXNz"), None),
            with_auth(Some("Basic dXNlcjpwYXNz"), Some("team-b")),
        ] {
            assert!(matches!(both.judge(&bad), Verdict::Reject(r) if r.status == 401));
        }
        let tenant_only = Behaviour::RequireAuth {
            basic: None,
            tenant: Some("team-a".into()),
        };
        assert_eq!(
            tenant_only.judge(&with_auth(None, Some("team-a"))),
            Verdict::Accept
        );
    }

    #[test]
    fn http_statuses_map_to_grpc_codes() {
        assert_eq!(Behaviour::grpc_code(500), Code::Internal);
        assert_eq!(Behaviour::grpc_code(503), Code::Unavailable);
        assert_eq!(Behaviour::grpc_code(429), Code::ResourceExhausted);
        assert_eq!(Behaviour::grpc_code(401), Code::Unauthenticated);
    }
}
