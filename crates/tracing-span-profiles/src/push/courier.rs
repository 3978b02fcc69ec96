//! One destination's delivery: its own backlog, `Retry-After` hold and warnings, as a task of its
//! own, so a destination that hangs or refuses never delays or drops another's profiles.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::backlog::{Backlog, MAX_BACKLOG_PROFILES, PushTotals};
use super::destination::Destination;
use super::failure::{Failure, Outcome};

/// At most one warning per kind of failure per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The sending half: where the tick loop hands each encoded profile.
pub(crate) struct Mailbox {
    pub(crate) destination: Arc<Destination>,
    tx: mpsc::Sender<Bytes>,
}

impl Mailbox {
    /// Hands `body` over; if the courier is that far behind, the profile is dropped here rather
    /// than queued without bound (its backlog would drop the oldest anyway).
    pub(crate) fn post(&self, body: Bytes) {
        let _ = self.tx.try_send(body);
    }
}

/// Starts the courier of `destination` on the current runtime. It delivers until its mailbox
/// closes, then delivers what is left by the deadline `stop` holds, and returns its totals.
pub(crate) fn start(
    destination: Destination,
    push_timeout: Duration,
    stop: watch::Receiver<Option<Instant>>,
) -> (Mailbox, tokio::task::JoinHandle<PushTotals>) {
    let destination = Arc::new(destination);
    let (tx, rx) = mpsc::channel(MAX_BACKLOG_PROFILES);
    let courier = Courier {
        destination: destination.clone(),
        push_timeout,
        backlog: Backlog::default(),
        warned: HashMap::new(),
        failing: false,
        hold_until: None,
    };
    let task = tokio::spawn(courier.run(rx, stop));
    (Mailbox { destination, tx }, task)
}

struct Courier {
    destination: Arc<Destination>,
    push_timeout: Duration,
    backlog: Backlog,
    /// When each kind of failure was last warned about.
    warned: HashMap<String, Instant>,
    failing: bool,
    /// No push before this: the server's `Retry-After`.
    hold_until: Option<Instant>,
}

impl Courier {
    async fn run(
        mut self,
        mut mailbox: mpsc::Receiver<Bytes>,
        mut stop: watch::Receiver<Option<Instant>>,
    ) -> PushTotals {
        while let Some(body) = mailbox.recv().await {
            self.backlog.push(body);
            // While the server's Retry-After holds, the profile waits in the backlog.
            let held = self.hold_until.is_some_and(|t| Instant::now() < t);
            if !held && self.deliver_unless_stopped(&mut stop).await {
                break;
            }
        }
        mailbox.close();
        while let Some(body) = mailbox.recv().await {
            self.backlog.push(body);
        }
        let deadline = (*stop.borrow()).unwrap_or_else(Instant::now);
        self.finish(deadline).await
    }

    /// Delivers the backlog; if shutdown comes meanwhile, the attempt in flight may still finish
    /// by the deadline (abandoning it at once could send its profile twice: once as it was, once
    /// with the rest). Returns whether shutdown came.
    async fn deliver_unless_stopped(
        &mut self,
        stop: &mut watch::Receiver<Option<Instant>>,
    ) -> bool {
        let delivery = self.deliver(None);
        tokio::pin!(delivery);
        let stopped_at: Option<Instant> = tokio::select! {
            _ = &mut delivery => return false,
            stopped = stop.wait_for(Option::is_some) => stopped.ok().and_then(|d| *d),
        };
        let deadline = stopped_at.unwrap_or_else(Instant::now);
        let _ = tokio::time::timeout_at(deadline.into(), delivery).await;
        true
    }

    async fn finish(mut self, deadline: Instant) -> PushTotals {
        self.backlog.newest_first();
        self.deliver(Some(deadline)).await;
        let mut totals = self.backlog.totals;
        totals.destination = self.destination.id();
        totals.undelivered = self.backlog.profiles.len() as u64;
        totals
    }

    /// Sends the backlog oldest first until it is empty or a send fails; with a deadline, each
    /// attempt gets only what is left of it. At shutdown a `Retry-After` hold is not waited out:
    /// one last attempt is all that is left.
    async fn deliver(&mut self, deadline: Option<Instant>) {
        while let Some(body) = self.backlog.profiles.front().cloned() {
            let mut timeout = self.destination.timeout(self.push_timeout);
            if let Some(deadline) = deadline {
                timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
                if timeout.is_zero() {
                    return;
                }
            }
            match self.destination.send(body, timeout).await {
                Outcome::Delivered => {
                    self.backlog.pop_front();
                    self.backlog.totals.pushed += 1;
                    if std::mem::take(&mut self.failing) {
                        let name = self.destination.name();
                        tracing::info!(server = %self.destination.shown(), "{name} recovered");
                    }
                }
                Outcome::Rejected(failure) => {
                    self.backlog.pop_front();
                    self.backlog.totals.rejected += 1;
                    self.warn(&failure, "refused a profile; it is dropped");
                }
                Outcome::Retry(failure) => {
                    self.backlog.totals.failed_attempts += 1;
                    self.failing = true;
                    self.hold_until = failure.retry_after.map(|d| Instant::now() + d);
                    self.warn(&failure, "failed; profiles are kept and retried");
                    return;
                }
            }
        }
    }

    /// At most one warning a minute for each kind of failure, so a server that goes from 500 to
    /// 401 is reported twice and one that stays down once.
    fn warn(&mut self, failure: &Failure, what: &str) {
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
        let name = self.destination.name();
        tracing::warn!(
            server = %self.destination.shown(),
            cause = %failure.cause,
            backlog = self.backlog.profiles.len(),
            failed_attempts = t.failed_attempts,
            dropped_backlog_full = t.dropped_backlog_full,
            rejected = t.rejected,
            "{name} {what}"
        );
    }
}
