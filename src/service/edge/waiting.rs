//! Connections still waiting for their first request head, oldest first.
//!
//! When every connection slot is taken, closing the newcomer would let a slow-headers attacker
//! that holds the slots lock every real client out until its connections time out. A connection
//! that has not finished one request head has cost the server nothing worth keeping, so the
//! newcomer takes the slot of the one that has waited longest instead; only when every slot holds
//! a connection that has asked for something is the newcomer closed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The register of waiting connections, shared by the accept loop and the connections.
#[derive(Default)]
pub(super) struct Waiting {
    inner: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    next: u64,
    /// Waiting connections by arrival: the first is the oldest.
    by_arrival: BTreeMap<u64, oneshot::Sender<()>>,
}

impl Waiting {
    /// Registers a connection that starts waiting for its first head now.
    pub(super) fn join(self: &Arc<Self>) -> Place {
        let (tell, evicted) = oneshot::channel();
        let mut queue = self.lock();
        let id = queue.next;
        queue.next += 1;
        queue.by_arrival.insert(id, tell);
        Place {
            waiting: Arc::clone(self),
            id,
            evicted,
        }
    }

    /// Tells the connection that has waited longest to go; false if none is waiting.
    pub(super) fn evict_oldest(&self) -> bool {
        let oldest = self.lock().by_arrival.pop_first();
        oldest.is_some_and(|(_, tell)| tell.send(()).is_ok())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's place in the register: it leaves when this is dropped (its head arrived, or it
/// ended).
pub(super) struct Place {
    waiting: Arc<Waiting>,
    id: u64,
    evicted: oneshot::Receiver<()>,
}

impl Place {
    /// Resolves when a newcomer takes this connection's slot; never otherwise.
    pub(super) async fn evicted(&mut self) {
        if (&mut self.evicted).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.waiting.lock().by_arrival.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_waiting_connection_is_evicted_and_one_that_left_is_not() {
        let waiting = Arc::new(Waiting::default());
        let first = waiting.join();
        let mut second = waiting.join();
        let mut third = waiting.join();
        drop(first);
        assert!(waiting.evict_oldest());
        tokio::time::timeout(std::time::Duration::from_secs(1), second.evicted())
            .await
            .expect("the oldest still waiting was told to go");
        let not_told =
            tokio::time::timeout(std::time::Duration::from_millis(50), third.evicted()).await;
        assert!(
            not_told.is_err(),
            "only one connection is evicted at a time"
        );
        drop(third);
        assert!(!waiting.evict_oldest(), "nobody is waiting");
    }
}
