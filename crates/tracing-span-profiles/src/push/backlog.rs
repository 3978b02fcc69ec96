//! Encoded profiles waiting for a server that is down, bounded in count and bytes, and what
//! happened to every profile of the run.

use std::collections::VecDeque;

use bytes::Bytes;

/// Profiles kept for a server that is down: a minute at the default 10 s upload interval. Beyond
/// it the oldest profile is dropped and counted in [`PushTotals::dropped_backlog_full`].
pub const MAX_BACKLOG_PROFILES: usize = 6;
/// And at most this many encoded bytes (one oversized profile is still kept).
pub(crate) const MAX_BACKLOG_BYTES: usize = 8 << 20;

/// What happened to the profiles of one run, as [`Profiler::shutdown`](crate::Profiler::shutdown)
/// reports it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushTotals {
    /// Where the profiles went: `pyroscope` or `otlp`.
    pub destination: &'static str,
    /// Profiles the server accepted.
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

/// Encoded push bodies, oldest first.
#[derive(Default)]
pub(crate) struct Backlog {
    pub(crate) profiles: VecDeque<Bytes>,
    bytes: usize,
    pub(crate) totals: PushTotals,
}

impl Backlog {
    pub(crate) fn push(&mut self, body: Bytes) {
        self.bytes += body.len();
        self.profiles.push_back(body);
        while self.profiles.len() > MAX_BACKLOG_PROFILES
            || (self.bytes > MAX_BACKLOG_BYTES && self.profiles.len() > 1)
        {
            self.pop_front();
            self.totals.dropped_backlog_full += 1;
        }
    }

    /// At shutdown the last profile goes first: if the deadline cuts the backlog short, it is
    /// what matters.
    pub(crate) fn newest_first(&mut self) {
        if let Some(newest) = self.profiles.pop_back() {
            self.profiles.push_front(newest);
        }
    }

    pub(crate) fn pop_front(&mut self) {
        if let Some(body) = self.profiles.pop_front() {
            self.bytes -= body.len();
        }
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
}
