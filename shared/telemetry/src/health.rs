//! Readiness: named checks that components flip as they become able to
//! work (a watch listed, the queue connected). `/readyz` is ready when
//! every registered check is; `/healthz` only says the process serves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The set of readiness checks of one process. Cheap to clone.
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<Mutex<Vec<NamedCheck>>>,
}

/// A check's name and its flag.
type NamedCheck = (String, Arc<AtomicBool>);

/// One readiness check; starts not ready.
#[derive(Clone)]
pub struct HealthCheck {
    ready: Arc<AtomicBool>,
}

impl HealthCheck {
    /// Marks the check ready or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

impl Health {
    /// A new, empty set (ready: nothing to wait for).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a check named `name`, not ready yet.
    pub fn check(&self, name: impl Into<String>) -> HealthCheck {
        let ready = Arc::new(AtomicBool::new(false));
        self.checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.into(), ready.clone()));
        HealthCheck { ready }
    }

    /// `Ok` when every check is ready; else the names of those that are not.
    pub fn ready(&self) -> Result<(), Vec<String>> {
        let checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        let waiting: Vec<String> = checks
            .iter()
            .filter(|(_, r)| !r.load(Ordering::Relaxed))
            .map(|(n, _)| n.clone())
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(waiting)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_when_every_check_is() {
        let h = Health::new();
        assert!(h.ready().is_ok());
        let a = h.check("watch/Machine");
        let b = h.check("queue");
        assert_eq!(
            h.ready().unwrap_err(),
            vec!["watch/Machine".to_string(), "queue".to_string()]
        );
        a.set_ready(true);
        assert_eq!(h.ready().unwrap_err(), vec!["queue".to_string()]);
        b.set_ready(true);
        assert!(h.ready().is_ok());
        a.set_ready(false);
        assert!(h.ready().is_err());
    }
}
