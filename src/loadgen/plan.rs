//! What a run of the load generator is asked to do, in plain values: whoever decides it (the
//! `loadgen` command line, the demo) builds one, and [`run`](super::run) needs nothing else.

use std::time::Duration;

use url::Url;

/// What to load, how hard and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Base URLs of rideshare instances, at least one; each order goes to one of them at random.
    pub targets: Vec<Url>,
    /// `None`: until the `stop` given to [`run`](super::run) resolves.
    pub duration: Option<Duration>,
    /// Orders in flight at once.
    pub concurrency: u16,
}
