//! A de-duplicating work queue with client-go `workqueue` semantics: a key
//! is queued at most once, and a key being worked on is never handed to a
//! second worker; if it is added meanwhile, it is queued again when the
//! first worker is done.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

use super::Key;

#[derive(Default)]
struct State {
    queue: VecDeque<Key>,
    queued: HashSet<Key>,
    processing: HashSet<Key>,
    dirty: HashSet<Key>,
}

/// The queue of objects to reconcile.
#[derive(Default)]
pub(crate) struct WorkQueue {
    state: Mutex<State>,
    notify: Notify,
}

impl WorkQueue {
    /// Queues `key` unless it is queued already.
    pub(crate) fn add(&self, key: Key) {
        let mut s = self.state.lock().expect("queue lock");
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Waits for the next key and marks it as being processed.
    pub(crate) async fn next(&self) -> Key {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock().expect("queue lock");
                if let Some(key) = s.queue.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Marks `key` done; queues it again if it was added while processed.
    pub(crate) fn done(&self, key: &Key) {
        let again = {
            let mut s = self.state.lock().expect("queue lock");
            s.processing.remove(key);
            s.dirty.remove(key)
        };
        if again {
            self.add(key.clone());
        }
    }

    /// Keys waiting (not counting those being processed).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().expect("queue lock").queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::KeyKind;

    fn key(n: &str) -> Key {
        Key {
            kind: KeyKind::Machine,
            namespace: "ns".into(),
            name: n.into(),
        }
    }

    #[tokio::test]
    async fn dedupes_and_requeues_keys_added_while_processing() {
        let q = WorkQueue::default();
        q.add(key("a"));
        q.add(key("a"));
        q.add(key("b"));
        assert_eq!(q.len(), 2);
        let a = q.next().await;
        assert_eq!(a, key("a"));
        q.add(key("a"));
        assert_eq!(q.len(), 1, "a key being processed is not queued twice");
        q.done(&a);
        assert_eq!(q.len(), 2, "but it comes back once done");
        assert_eq!(q.next().await, key("b"));
        assert_eq!(q.next().await, key("a"));
    }
}
