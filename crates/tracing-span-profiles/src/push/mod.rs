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

mod backlog;
mod encode;
mod failure;
mod target;

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use pyroscope::backend::{BackendImpl, BackendReady};
use tokio::sync::oneshot;
use url::Url;

use backlog::Backlog;
pub use backlog::{MAX_BACKLOG_PROFILES, PushTotals};
use encode::encode;
use failure::{Failure, Outcome, error_chain, parse_retry_after};
pub(crate) use target::{PushTarget, Secret};

/// At most one warning per kind of failure per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The push thread; [`ProfilePusher::shutdown`] pushes the last profile.
pub(crate) struct ProfilePusher {
    stop: Option<oneshot::Sender<Instant>>,
    finished: mpsc::Receiver<PushTotals>,
    thread: Option<JoinHandle<()>>,
}

impl ProfilePusher {
    /// Starts pushing what `backend` reports, every upload interval.
    pub(crate) fn start(
        backend: BackendImpl<BackendReady>,
        target: PushTarget,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
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
            shown_url: target.shown_server(),
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
    pub(crate) fn shutdown(mut self, deadline: Duration) -> Option<PushTotals> {
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
            request = request.basic_auth(user, Some(&password.0));
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
        Failure::from_status(status.as_u16(), &text, retry_after)
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
