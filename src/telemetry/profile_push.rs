//! Pushes CPU profiles to Pyroscope, one at a time, on its own thread.
//!
//! The `pyroscope` crate's agent pushes with a fixed 10 s timeout behind a queue of ten sessions
//! and drops a push that fails, so a stalled server delays the first profile after it recovers by
//! up to ten seconds plus a queue, and an outage loses everything in it. Here each push has a
//! timeout shorter than the upload interval, so a stalled push is over before the next tick;
//! profiles that failed wait in a small backlog that drops the oldest when full (counted), and
//! the backlog is delivered oldest first once the server answers again. A `Retry-After` on a
//! failed push (a rate limit, a proxy in maintenance) is honoured: no push until then, while the
//! backlog keeps the newest profiles. The profiles themselves are the crate's: its backend's
//! report, its pprof encoding, its push protocol.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use pyroscope::backend::{BackendImpl, BackendReady, ReportBatch, ReportData};
use pyroscope::encode::r#gen::push::{PushRequest, RawProfileSeries, RawSample};
use pyroscope::encode::r#gen::types::LabelPair;
use tokio::sync::oneshot;
use url::Url;

use crate::config::{Secret, without_credentials};

/// Longest a single push may take, whatever the interval.
const MAX_PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Profiles kept for a server that is down: a minute at the default 10 s interval.
pub const MAX_BACKLOG_PROFILES: usize = 6;
/// And at most this many encoded bytes.
pub const MAX_BACKLOG_BYTES: usize = 8 << 20;
/// At most one warning per kind of failure per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// The longest a server's `Retry-After` holds pushes back, so a wrong header cannot silence
/// profiles for good.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Where and as whom profiles are pushed.
#[derive(Clone)]
pub struct PushTarget {
    /// The server's base URL; the push path is appended.
    pub server: Url,
    /// Series labels: `service_name` and the static tags.
    pub labels: Vec<(String, String)>,
    pub basic_auth: Option<(String, Secret)>,
    /// Sent as `X-Scope-OrgID`.
    pub tenant_id: Option<String>,
    pub upload_interval: Duration,
    pub sample_rate: u32,
}

impl PushTarget {
    /// Short enough that a stalled push ends before the next tick is due.
    pub fn push_timeout(&self) -> Duration {
        (self.upload_interval * 3 / 4).min(MAX_PUSH_TIMEOUT)
    }

    fn push_url(&self) -> Url {
        let mut url = self.server.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .push("push.v1.PusherService")
                .push("Push");
        }
        url
    }
}

/// What happened to the profiles of one run; logged at shutdown.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushTotals {
    pub pushed: u64,
    /// Failed attempts (each kept its profile for the next tick).
    pub failed_attempts: u64,
    /// Dropped from a full backlog, oldest first.
    pub dropped_backlog_full: u64,
    /// Refused by the server as a bad request (4xx other than 401, 403, 408 and 429).
    pub rejected: u64,
    /// Still in the backlog when the process stopped.
    pub undelivered: u64,
}

impl std::fmt::Display for PushTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pushed={} undelivered={} failed_attempts={} dropped_backlog_full={} rejected={}",
            self.pushed,
            self.undelivered,
            self.failed_attempts,
            self.dropped_backlog_full,
            self.rejected
        )
    }
}

/// The push thread; [`ProfilePusher::shutdown`] pushes the last profile.
pub struct ProfilePusher {
    stop: Option<oneshot::Sender<Instant>>,
    finished: mpsc::Receiver<PushTotals>,
    thread: Option<JoinHandle<()>>,
}

impl ProfilePusher {
    /// Starts pushing what `backend` reports, every upload interval.
    pub fn start(backend: BackendImpl<BackendReady>, target: PushTarget) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .user_agent(concat!(
                "rideshare/",
                env!("CARGO_PKG_VERSION"),
                " pyroscope-rs"
            ))
            .build()
            .map_err(|e| format!("cannot build the Pyroscope HTTP client: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the profile push thread: {e}"))?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let (finished_tx, finished) = mpsc::channel();
        let pusher = Pusher {
            backend,
            client,
            url: target.push_url(),
            shown_url: without_credentials(&target.server).to_string(),
            target,
            backlog: Backlog::default(),
            window_start: SystemTime::now(),
            warned: HashMap::new(),
            failing: false,
            hold_until: None,
        };
        let thread = std::thread::Builder::new()
            .name("profile-push".into())
            .spawn(move || {
                let totals = runtime.block_on(pusher.run(stop_rx));
                let _ = finished_tx.send(totals);
            })
            .map_err(|e| format!("cannot start the profile push thread: {e}"))?;
        Ok(ProfilePusher {
            stop: Some(stop_tx),
            finished,
            thread: Some(thread),
        })
    }

    /// Takes the last profile and pushes it with the backlog, all within `deadline`; a push in
    /// flight is abandoned (its profile goes out with the rest). Returns the run's totals, or
    /// `None` if the deadline passed first.
    pub fn shutdown(mut self, deadline: Duration) -> Option<PushTotals> {
        let until = Instant::now() + deadline;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(until);
        }
        // A little past the deadline: the thread stops its own pushes at it.
        let totals = self
            .finished
            .recv_timeout(deadline + Duration::from_millis(250))
            .ok();
        if totals.is_some() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
        totals
    }
}

struct Pusher {
    backend: BackendImpl<BackendReady>,
    client: reqwest::Client,
    target: PushTarget,
    url: Url,
    /// The server URL without credentials, for messages.
    shown_url: String,
    backlog: Backlog,
    /// Start of the time range the next report covers.
    window_start: SystemTime,
    /// When each kind of failure was last warned about.
    warned: HashMap<String, Instant>,
    failing: bool,
    /// No push before this: the server's `Retry-After`.
    hold_until: Option<Instant>,
}

impl Pusher {
    async fn run(mut self, mut stop: oneshot::Receiver<Instant>) -> PushTotals {
        let interval = self.target.upload_interval;
        let mut tick = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(tick) => {}
                deadline = &mut stop => return self.finish(deadline.ok()).await,
            }
            self.take_report();
            // While the server's Retry-After holds, the report waits in the backlog.
            let held = self.hold_until.is_some_and(|t| Instant::now() < t);
            if !held {
                tokio::select! {
                    _ = self.deliver(None) => {}
                    deadline = &mut stop => return self.finish(deadline.ok()).await,
                }
            }
            // A tick missed while a slow push ran is skipped: its samples are in the next report.
            let now = tokio::time::Instant::now();
            tick += interval;
            while tick <= now {
                tick += interval;
            }
        }
    }

    async fn finish(mut self, deadline: Option<Instant>) -> PushTotals {
        self.take_report();
        // The last profile first: if the deadline cuts the backlog short, it is what matters.
        self.backlog.newest_first();
        let deadline = deadline.unwrap_or_else(Instant::now);
        self.deliver(Some(deadline)).await;
        let mut totals = self.backlog.totals;
        totals.undelivered = self.backlog.profiles.len() as u64;
        totals
    }

    /// Moves the samples since the last report into the backlog, as one encoded push body.
    fn take_report(&mut self) {
        let until = SystemTime::now();
        let from = std::mem::replace(&mut self.window_start, until);
        match self.backend.report() {
            Ok(batch) => {
                if let Some(body) = encode(&self.target, batch, from, until) {
                    self.backlog.push(body);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the profiler gave no report")
            }
        }
    }

    /// Pushes the backlog oldest first until it is empty or a push fails; with a deadline, each
    /// push gets only what is left of it. At shutdown a `Retry-After` hold is not waited out: one
    /// last attempt is all that is left.
    async fn deliver(&mut self, deadline: Option<Instant>) {
        while let Some(body) = self.backlog.profiles.front().cloned() {
            let mut timeout = self.target.push_timeout();
            if let Some(deadline) = deadline {
                timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
                if timeout.is_zero() {
                    return;
                }
            }
            match self.push(body, timeout).await {
                Outcome::Delivered => {
                    self.backlog.pop_front();
                    self.backlog.totals.pushed += 1;
                    if std::mem::take(&mut self.failing) {
                        tracing::info!(server = %self.shown_url, "Pyroscope push recovered");
                    }
                }
                Outcome::Rejected(failure) => {
                    self.backlog.pop_front();
                    self.backlog.totals.rejected += 1;
                    self.warn(&failure, "Pyroscope refused a profile; it is dropped");
                }
                Outcome::Retry(failure) => {
                    self.backlog.totals.failed_attempts += 1;
                    self.failing = true;
                    self.hold_until = failure.retry_after.map(|d| Instant::now() + d);
                    self.warn(
                        &failure,
                        "Pyroscope push failed; profiles are kept and retried",
                    );
                    return;
                }
            }
        }
    }

    async fn push(&self, body: Bytes, timeout: Duration) -> Outcome {
        let mut request = self
            .client
            .post(self.url.clone())
            .header("Content-Type", "application/proto")
            .header("Content-Encoding", "gzip")
            .timeout(timeout)
            .body(body);
        if let Some((user, password)) = &self.target.basic_auth {
            request = request.basic_auth(user, Some(password.expose()));
        }
        if let Some(tenant) = &self.target.tenant_id {
            request = request.header("X-Scope-OrgID", tenant);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                let cause = format!("no answer within {timeout:?}");
                return Outcome::Retry(Failure::new("timeout", cause));
            }
            // Without the URL: reqwest prints it whole, credentials included.
            Err(e) => {
                let cause = error_chain(&e.without_url());
                return Outcome::Retry(Failure::new("connection", cause));
            }
        };
        let status = response.status();
        if status.is_success() {
            // Read the (empty) body so the connection can be reused.
            let _ = response.bytes().await;
            return Outcome::Delivered;
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let text = response.text().await.unwrap_or_default();
        let mut cause = format!("HTTP {status}: {}", first_line(&text, 200));
        if let Some(wait) = retry_after {
            cause.push_str(&format!(" (retry after {}s)", wait.as_secs()));
        }
        let failure = Failure {
            retry_after,
            ..Failure::new(status.as_str(), cause)
        };
        if status.is_client_error() && ![401, 403, 408, 429].contains(&status.as_u16()) {
            Outcome::Rejected(failure)
        } else {
            Outcome::Retry(failure)
        }
    }

    /// At most one warning a minute for each kind of failure, so a server that goes from 500 to
    /// 401 is reported twice and one that stays down once.
    fn warn(&mut self, failure: &Failure, message: &str) {
        let now = Instant::now();
        if self
            .warned
            .get(&failure.kind)
            .is_some_and(|t| now.duration_since(*t) < WARN_EVERY)
        {
            return;
        }
        self.warned.insert(failure.kind.clone(), now);
        let t = &self.backlog.totals;
        tracing::warn!(
            server = %self.shown_url,
            cause = %failure.cause,
            backlog = self.backlog.profiles.len(),
            failed_attempts = t.failed_attempts,
            dropped_backlog_full = t.dropped_backlog_full,
            rejected = t.rejected,
            "{message}"
        );
    }
}

enum Outcome {
    Delivered,
    /// A bad request: sending it again cannot help.
    Rejected(Failure),
    /// The server is down, slow, overloaded or wants other credentials: try again later.
    Retry(Failure),
}

struct Failure {
    /// What warnings are rate-limited by: `timeout`, `connection` or the HTTP status.
    kind: String,
    cause: String,
    /// The server's `Retry-After`, at most [`MAX_RETRY_AFTER`].
    retry_after: Option<Duration>,
}

impl Failure {
    fn new(kind: impl Into<String>, cause: String) -> Self {
        Failure {
            kind: kind.into(),
            cause,
            retry_after: None,
        }
    }
}

/// `Retry-After` in either of its forms, delay-seconds or an HTTP date (RFC 9110 10.2.3); a date
/// in the past means now. `None` for anything else, which is then ignored.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
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

/// Encoded profiles waiting to be pushed, bounded in count and bytes.
#[derive(Default)]
struct Backlog {
    profiles: VecDeque<Bytes>,
    bytes: usize,
    totals: PushTotals,
}

impl Backlog {
    fn push(&mut self, body: Bytes) {
        self.bytes += body.len();
        self.profiles.push_back(body);
        while self.profiles.len() > MAX_BACKLOG_PROFILES
            || (self.bytes > MAX_BACKLOG_BYTES && self.profiles.len() > 1)
        {
            self.pop_front();
            self.totals.dropped_backlog_full += 1;
        }
    }

    fn newest_first(&mut self) {
        if let Some(newest) = self.profiles.pop_back() {
            self.profiles.push_front(newest);
        }
    }

    fn pop_front(&mut self) {
        if let Some(body) = self.profiles.pop_front() {
            self.bytes -= body.len();
        }
    }
}

/// The push request the Pyroscope SDKs send: a gzipped `PushRequest` holding one pprof profile.
fn encode(
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

fn error_chain(e: &dyn std::error::Error) -> String {
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

    #[test]
    fn the_backlog_drops_the_oldest_and_counts() {
        let mut backlog = Backlog::default();
        for i in 0..MAX_BACKLOG_PROFILES + 3 {
            backlog.push(Bytes::from(vec![i as u8; 10]));
        }
        assert_eq!(backlog.profiles.len(), MAX_BACKLOG_PROFILES);
        assert_eq!(backlog.totals.dropped_backlog_full, 3);
        assert_eq!(backlog.profiles.front().unwrap()[0], 3, "oldest went first");
        assert_eq!(backlog.bytes, MAX_BACKLOG_PROFILES * 10);
        backlog.newest_first();
        let order: Vec<u8> = backlog.profiles.iter().map(|p| p[0]).collect();
        assert_eq!(
            order,
            [8, 3, 4, 5, 6, 7],
            "at shutdown the last profile goes first"
        );
    }

    #[test]
    fn the_backlog_is_bounded_in_bytes_but_keeps_the_newest() {
        let mut backlog = Backlog::default();
        backlog.push(Bytes::from(vec![1; MAX_BACKLOG_BYTES / 2 + 1]));
        backlog.push(Bytes::from(vec![2; MAX_BACKLOG_BYTES / 2 + 1]));
        assert_eq!(backlog.profiles.len(), 1);
        assert_eq!(backlog.profiles[0][0], 2);
        backlog.push(Bytes::from(vec![3; MAX_BACKLOG_BYTES * 2]));
        assert_eq!(
            backlog.profiles.len(),
            1,
            "one oversized profile is still sent"
        );
        assert_eq!(backlog.totals.dropped_backlog_full, 2);
    }

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
    fn a_push_ends_before_the_next_tick() {
        let target = |secs| PushTarget {
            server: Url::parse("http://localhost:4040/base/").unwrap(),
            labels: vec![],
            basic_auth: None,
            tenant_id: None,
            upload_interval: Duration::from_secs(secs),
            sample_rate: 100,
        };
        assert_eq!(target(1).push_timeout(), Duration::from_millis(750));
        assert_eq!(target(10).push_timeout(), Duration::from_millis(7500));
        assert_eq!(target(60).push_timeout(), MAX_PUSH_TIMEOUT);
        assert_eq!(
            target(10).push_url().as_str(),
            "http://localhost:4040/base/push.v1.PusherService/Push"
        );
    }
}
