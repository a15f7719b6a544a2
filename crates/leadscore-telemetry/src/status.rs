//! Whether the instance is ready to serve, and what it owns: read by the
//! admin server's `/readyz`, `/segments` and `/leads`.

use leadscore_store::Partition;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::Mutex;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Status {
    /// Input partitions (groups) owned and restored.
    owned: Mutex<BTreeSet<Partition>>,
    /// The instance has joined the group (received an assignment, maybe empty).
    pub consuming: AtomicBool,
    /// The client reports every broker down.
    pub brokers_down: AtomicBool,
    /// Partitions being restored from the changelog.
    pub restoring: AtomicI64,
}

impl Status {
    pub fn owned(&self) -> BTreeSet<Partition> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_owned(&self, owned: BTreeSet<Partition>) {
        *self.owned.lock().unwrap_or_else(|p| p.into_inner()) = owned;
    }

    /// Ready: consuming, nothing restoring, brokers reachable.
    pub fn ready(&self) -> Result<(), String> {
        if !self.consuming.load(Relaxed) {
            return Err("not consuming yet (joining the consumer group)".into());
        }
        if self.brokers_down.load(Relaxed) {
            return Err("all brokers are unreachable".into());
        }
        match self.restoring.load(Relaxed) {
            0 => Ok(()),
            n => Err(format!("restoring {n} partition(s) from the changelog")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_consuming_restored_and_connected() {
        let s = Status::default();
        assert!(s.ready().unwrap_err().contains("joining"));
        s.consuming.store(true, Relaxed);
        assert_eq!(s.ready(), Ok(()));
        s.restoring.store(2, Relaxed);
        assert!(s.ready().unwrap_err().contains("restoring 2"));
        s.restoring.store(0, Relaxed);
        s.brokers_down.store(true, Relaxed);
        assert!(s.ready().unwrap_err().contains("unreachable"));
    }
}
