//! The executions a replica has in hand, one copy at a time. When the broker or the daemon
//! goes, an execution can reach a worker three ways at once: the copy it had in hand, that
//! copy's redelivery, and the previous worker's forward sent again with the mark. The
//! redelivered and the marked copy each check the store before running, but both check
//! before the first copy records, so both ran (docs/reliability.md, the trace). Here a copy
//! of an execution already in this replica's hands waits until that one settles; its store
//! check then finds the stage done. Copies that reach other replicas are not covered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// The executionIds in hand, each with the lock its copies take in turn.
#[derive(Debug, Default)]
pub struct InHand {
    ids: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// One copy's turn with its execution; dropping it lets the next copy go on.
pub struct Held<'a> {
    turn: Option<OwnedMutexGuard<()>>,
    id: String,
    in_hand: &'a InHand,
}

impl InHand {
    /// Waits until no other copy of `id` is in hand here, then holds it.
    pub async fn hold(&self, id: &str) -> Held<'_> {
        let lock = self.ids().entry(id.to_string()).or_default().clone();
        Held {
            turn: Some(lock.lock_owned().await),
            id: id.to_string(),
            in_hand: self,
        }
    }

    /// How many executions are in hand or waited for.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids().len()
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        // Nothing in the map is left half-changed by a panic: the lock is taken again.
        self.ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        drop(self.turn.take());
        let mut ids = self.in_hand.ids();
        // The map's own reference is the last one: no other copy holds or waits for it.
        if ids
            .get(&self.id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            ids.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_second_copy_waits_for_the_first_and_the_entry_goes_with_the_last() {
        let in_hand = InHand::default();
        let first = in_hand.hold("e1").await;
        let other = in_hand.hold("e2").await;
        let second = in_hand.hold("e1");
        tokio::pin!(second);
        let waited = tokio::time::timeout(Duration::from_millis(50), &mut second).await;
        assert!(waited.is_err(), "the second copy went on beside the first");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second copy's turn once the first settled");
        assert_eq!(in_hand.len(), 2);
        drop((second, other));
        assert_eq!(in_hand.len(), 0, "nothing kept for executions settled");
    }
}
