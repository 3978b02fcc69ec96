//! What a failed push means for the next one: retry or drop, and how long the server asked us
//! to wait.

use std::time::{Duration, SystemTime};

/// The longest a server's `Retry-After` holds pushes back, so a wrong header cannot silence
/// profiles for good.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

pub(crate) enum Outcome {
    Delivered,
    /// A bad request: sending it again cannot help.
    Rejected(Failure),
    /// The server is down, slow, overloaded or wants other credentials: try again later.
    Retry(Failure),
}

pub(crate) struct Failure {
    /// What warnings are rate-limited by: `timeout`, `connection` or the HTTP status.
    pub(crate) kind: String,
    pub(crate) cause: String,
    /// The server's `Retry-After`, at most [`MAX_RETRY_AFTER`].
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    pub(crate) fn new(kind: impl Into<String>, cause: String) -> Self {
        Failure {
            kind: kind.into(),
            cause,
            retry_after: None,
        }
    }

    /// A non-2xx answer, retried or dropped as `retryable` says.
    pub(crate) fn from_status(
        status: u16,
        body: &str,
        retry_after: Option<Duration>,
        retryable: bool,
    ) -> Outcome {
        let mut cause = format!("HTTP {status}: {}", first_line(body, 200));
        if let Some(wait) = retry_after {
            cause.push_str(&format!(" (retry after {}s)", wait.as_secs()));
        }
        let failure = Failure {
            retry_after,
            ..Failure::new(status.to_string(), cause)
        };
        if retryable {
            Outcome::Retry(failure)
        } else {
            Outcome::Rejected(failure)
        }
    }
}

/// Which non-2xx statuses are worth sending again; the rest drop the profile.
pub(crate) type Retryable = fn(u16) -> bool;

/// Pyroscope: a 4xx other than 401, 403, 408 and 429 is the profile's fault; anything else is the
/// server's.
pub(crate) fn pyroscope_retryable(status: u16) -> bool {
    !(400..500).contains(&status) || [401, 403, 408, 429].contains(&status)
}

/// Sends `request` (its timeout set to `timeout`) and judges the answer: a success, a failure
/// `retryable` keeps for later (with the server's `Retry-After`), or one that drops the profile.
pub(crate) async fn send_http(
    request: reqwest::RequestBuilder,
    timeout: Duration,
    retryable: Retryable,
) -> Outcome {
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return timed_out(timeout),
        // Without the URL: reqwest prints it whole, credentials included.
        Err(e) => {
            let cause = error_chain(&e.without_url());
            return Outcome::Retry(Failure::new("connection", cause));
        }
    };
    let status = response.status().as_u16();
    if response.status().is_success() {
        // Read the (empty) body so the connection can be reused.
        let _ = response.bytes().await;
        return Outcome::Delivered;
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let text = error_body(response).await;
    Failure::from_status(status, &text, retry_after, retryable(status))
}

/// No answer within `timeout`: worth another try.
pub(crate) fn timed_out(timeout: Duration) -> Outcome {
    Outcome::Retry(Failure::new(
        "timeout",
        format!("no answer within {timeout:?}"),
    ))
}

/// `Retry-After` in either of its forms, delay-seconds or an HTTP date (RFC 9110 10.2.3); a date
/// in the past means now. `None` for anything else, which is then ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The most of an error body read: enough for a message, never a whole page a proxy sends.
const MAX_ERROR_BODY: usize = 4096;

/// The start of a failed response's body, as text, reading at most [`MAX_ERROR_BODY`] bytes.
pub(crate) async fn error_body(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&body).into_owned()
}

/// An error and its sources on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn first_line(text: &str, max: usize) -> &str {
    let line = text.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(max) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(42));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(42))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(42));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        for bad in ["", "-1", "1.5", "soon", "Tue, 99 Nov 2026 00:00:00 GMT"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn client_errors_drop_the_profile_but_auth_and_throttling_retry() {
        for (status, retried) in [
            (400, false),
            (413, false),
            (401, true),
            (429, true),
            (503, true),
        ] {
            let outcome =
                Failure::from_status(status, "nope\nmore", None, pyroscope_retryable(status));
            assert_eq!(matches!(outcome, Outcome::Retry(_)), retried, "{status}");
        }
    }
}
