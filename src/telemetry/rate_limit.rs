//! One warning per cause per interval: a backend that stays down is reported once a minute, not
//! once per export, and a new cause is reported at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// When each cause was last let through.
#[derive(Debug)]
pub(crate) struct RateLimit<K> {
    every: Duration,
    last: HashMap<K, Instant>,
}

impl<K: Eq + Hash> RateLimit<K> {
    pub(crate) fn new(every: Duration) -> Self {
        RateLimit {
            every,
            last: HashMap::new(),
        }
    }

    /// Whether a warning about `cause` may go out now; if so, its interval starts again.
    pub(crate) fn allow(&mut self, cause: K) -> bool {
        let now = Instant::now();
        match self.last.get(&cause) {
            Some(t) if now.duration_since(*t) < self.every => false,
            _ => {
                self.last.insert(cause, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_once_per_interval() {
        let mut limit = RateLimit::new(Duration::from_secs(60));
        assert!(limit.allow("refused"));
        assert!(!limit.allow("refused"));
        assert!(limit.allow("HTTP 500"), "a new cause goes out at once");
        let mut limit = RateLimit::new(Duration::ZERO);
        assert!(limit.allow(()));
        assert!(limit.allow(()), "after the interval it goes out again");
    }
}
