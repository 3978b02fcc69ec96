//! Pushes CPU profiles to Pyroscope (and, with the `otlp` feature, to an OTLP endpoint) from a
//! thread of its own.
//!
//! The `pyroscope` crate's agent pushes with a fixed 10 s timeout behind a queue of ten sessions
//! and drops a push that fails, so a stalled server delays the first profile after it recovers by
//! up to ten seconds plus a queue, and an outage loses everything in it. Here each push has a
//! timeout shorter than the upload interval, so a stalled push is over before the next tick;
//! profiles that failed wait in a small backlog that drops the oldest when full (counted), and
//! the backlog is delivered oldest first once the server answers again. A `Retry-After` on a
//! failed push (a rate limit, a proxy in maintenance) is honoured: no push until then, while the
//! backlog keeps the newest profiles. Each destination has its own backlog and task
//! (`courier`), so one that is down never holds up another. The profiles themselves are the
//! `pyroscope` crate's: its backend's report and its pprof encoding, sent as its push protocol
//! or converted to OTLP.

mod backlog;
mod courier;
pub(crate) mod destination;
pub(crate) mod encode;
pub(crate) mod failure;
mod target;

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use pyroscope::backend::{BackendImpl, BackendReady, ReportData};
use pyroscope::encode::r#gen::google::Profile;
use tokio::sync::{oneshot, watch};

pub use backlog::{MAX_BACKLOG_PROFILES, PushTotals};
use courier::Mailbox;
pub(crate) use destination::Destination;
pub(crate) use target::{PushTarget, Secret};

/// The User-Agent of every push and export.
pub(crate) const USER_AGENT: &str = concat!(
    env!("CARGO_PKG_NAME"),
    "/",
    env!("CARGO_PKG_VERSION"),
    " pyroscope-rs"
);

/// The push thread; [`ProfilePusher::shutdown`] sends the last profile.
pub(crate) struct ProfilePusher {
    stop: Option<oneshot::Sender<Instant>>,
    finished: mpsc::Receiver<Vec<PushTotals>>,
    thread: Option<JoinHandle<()>>,
}

/// How often, and at what sample rate, the backend's reports are taken.
#[derive(Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) upload_interval: Duration,
    pub(crate) sample_rate: u32,
}

impl Schedule {
    /// Short enough that a stalled push ends before the next tick is due.
    fn push_timeout(&self) -> Duration {
        (self.upload_interval * 3 / 4).min(Duration::from_secs(10))
    }
}

impl ProfilePusher {
    /// Starts sending what `backend` reports to every destination, every upload interval.
    pub(crate) fn start(
        backend: BackendImpl<BackendReady>,
        destinations: Vec<Destination>,
        schedule: Schedule,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the profile push thread: {e}"))?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let (finished_tx, finished) = mpsc::channel();
        let ticker = Ticker {
            backend,
            schedule,
            window_start: SystemTime::now(),
        };
        let thread = std::thread::Builder::new()
            .name("profile-push".into())
            .spawn(move || {
                let totals = runtime.block_on(ticker.run(destinations, stop_rx));
                let _ = finished_tx.send(totals);
            })
            .map_err(|e| format!("cannot start the profile push thread: {e}"))?;
        Ok(ProfilePusher {
            stop: Some(stop_tx),
            finished,
            thread: Some(thread),
        })
    }

    /// Takes the last profile and sends it with the backlogs, all within `deadline`; a send in
    /// flight is abandoned (its profile goes out with the rest). Returns each destination's
    /// totals, in the order they were given, or `None` if the deadline passed first.
    pub(crate) fn shutdown(mut self, deadline: Duration) -> Option<Vec<PushTotals>> {
        let until = Instant::now() + deadline;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(until);
        }
        // A little past the deadline: the couriers stop their own sends at it.
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

/// Takes a report every upload interval and hands it, encoded, to every destination.
struct Ticker {
    backend: BackendImpl<BackendReady>,
    schedule: Schedule,
    /// Start of the time range the next report covers.
    window_start: SystemTime,
}

impl Ticker {
    async fn run(
        mut self,
        destinations: Vec<Destination>,
        mut stop: oneshot::Receiver<Instant>,
    ) -> Vec<PushTotals> {
        let (deadline_tx, deadline_rx) = watch::channel(None);
        let push_timeout = self.schedule.push_timeout();
        let (mailboxes, couriers): (Vec<_>, Vec<_>) = destinations
            .into_iter()
            .map(|d| courier::start(d, push_timeout, deadline_rx.clone()))
            .unzip();
        let interval = self.schedule.upload_interval;
        let mut tick = tokio::time::Instant::now() + interval;
        let deadline = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(tick) => self.post_report(&mailboxes),
                deadline = &mut stop => break deadline.unwrap_or_else(|_| Instant::now()),
            }
            // A tick missed while the thread was busy is skipped: its samples are in the next.
            let now = tokio::time::Instant::now();
            tick += interval;
            while tick <= now {
                tick += interval;
            }
        };
        self.post_report(&mailboxes);
        let _ = deadline_tx.send(Some(deadline));
        drop(mailboxes);
        let mut totals = Vec::new();
        for courier in couriers {
            totals.push(courier.await.unwrap_or_default());
        }
        totals
    }

    /// The samples since the last report, as every destination's body.
    fn post_report(&mut self, mailboxes: &[Mailbox]) {
        let Some((profile, profile_type)) = self.take_profile() else {
            return;
        };
        for mailbox in mailboxes {
            if let Some(body) = mailbox.destination.encode(&profile, &profile_type) {
                mailbox.post(body);
            }
        }
    }

    /// The backend's report since the last one, as one pprof profile and its type name.
    fn take_profile(&mut self) -> Option<(Profile, String)> {
        let until = SystemTime::now();
        let from = std::mem::replace(&mut self.window_start, until);
        let batch = match self.backend.report() {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "the profiler gave no report");
                return None;
            }
        };
        let nanos =
            |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        let profile = match batch.data {
            ReportData::Reports(reports) => pyroscope::encode::pprof::encode(
                &reports,
                self.schedule.sample_rate,
                nanos(from),
                nanos(until).saturating_sub(nanos(from)),
            ),
            ReportData::RawPprof(bytes) => Profile::decode(bytes.as_slice()).ok()?,
        };
        Some((profile, batch.profile_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_ends_before_the_next_tick() {
        let schedule = |secs| Schedule {
            upload_interval: Duration::from_secs(secs),
            sample_rate: 100,
        };
        assert_eq!(schedule(1).push_timeout(), Duration::from_millis(750));
        assert_eq!(schedule(10).push_timeout(), Duration::from_millis(7500));
        assert_eq!(schedule(60).push_timeout(), Duration::from_secs(10));
    }
}
