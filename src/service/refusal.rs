//! Every way the service says no, and the one JSON shape it says it in: `{"error": "..."}` with
//! the status that names the reason, so a client handles all refusals alike.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A request the service will not answer with an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// 400: the query string is malformed or holds a bad value; the message says which.
    BadQuery(String),
    /// 404: no route.
    NotFound,
    /// 414: the request target is longer than any real client sends.
    UriTooLong,
    /// 431: the headers are larger than any real client sends.
    HeadersTooLarge,
    /// 503: too many orders in flight already.
    Overloaded,
    /// 503: the order took longer than the request timeout and was abandoned.
    TimedOut,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::BadQuery(_) => StatusCode::BAD_REQUEST,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::UriTooLong => StatusCode::URI_TOO_LONG,
            Refusal::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::Overloaded | Refusal::TimedOut => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn message(&self) -> &str {
        match self {
            Refusal::BadQuery(message) => message,
            Refusal::NotFound => "not found",
            Refusal::UriTooLong => "request URI too long",
            Refusal::HeadersTooLarge => "request headers too large",
            Refusal::Overloaded => "overloaded: too many orders in flight",
            Refusal::TimedOut => "the order took too long and was abandoned",
        }
    }

    /// Seconds a client should wait before trying again: set when the refusal is about this
    /// moment's load, not the request, so a client backs off instead of piling on.
    fn retry_after(&self) -> Option<HeaderValue> {
        match self {
            Refusal::Overloaded | Refusal::TimedOut => Some(HeaderValue::from_static("1")),
            _ => None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response =
            (self.status(), Json(json!({ "error": self.message() }))).into_response();
        if let Some(seconds) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(refusal: Refusal) -> (StatusCode, Vec<(String, String)>, String) {
        let response = refusal.into_response();
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    /// The bodies and headers the service has always sent for each refusal.
    #[tokio::test]
    async fn each_refusal_is_its_status_a_json_error_and_retry_after_when_busy() {
        let json = || ("content-type".to_owned(), "application/json".to_owned());
        let retry = || ("retry-after".to_owned(), "1".to_owned());
        let cases = [
            (
                Refusal::BadQuery("bad \"x\"".into()),
                400,
                vec![json()],
                r#"{"error":"bad \"x\""}"#,
            ),
            (
                Refusal::NotFound,
                404,
                vec![json()],
                r#"{"error":"not found"}"#,
            ),
            (
                Refusal::UriTooLong,
                414,
                vec![json()],
                r#"{"error":"request URI too long"}"#,
            ),
            (
                Refusal::HeadersTooLarge,
                431,
                vec![json()],
                r#"{"error":"request headers too large"}"#,
            ),
            (
                Refusal::Overloaded,
                503,
                vec![json(), retry()],
                r#"{"error":"overloaded: too many orders in flight"}"#,
            ),
            (
                Refusal::TimedOut,
                503,
                vec![json(), retry()],
                r#"{"error":"the order took too long and was abandoned"}"#,
            ),
        ];
        for (refusal, status, headers, body) in cases {
            assert_eq!(
                parts(refusal).await,
                (
                    StatusCode::from_u16(status).unwrap(),
                    headers,
                    body.to_owned()
                )
            );
        }
    }
}
