//! Writing a sealed commit to the store off the loop's thread.
//!
//! A RocksDB write of a commit (each changed lead's state, timer moves,
//! checkpoints; tens of megabytes a second at full load) took 20-50 ms of the
//! loop's time per commit, and every event that arrived meanwhile waited for
//! it. The runtime instead hands the commit's sealed layer
//! ([`crate::overlay::Overlay::sealed_layer`]) to a [`StoreWriter`] and goes on
//! processing, reading the layer through the overlay until the writer says it
//! is done. [`BackgroundWriter`] is the service's writer, one thread; the
//! simulation has its own (`leadscore_sim::ports::SimWriter`), which lands a
//! write at a later turn of its scheduler. Every runtime has a writer.

use crate::overlay::SealedLayer;
use crate::{Partition, StateStore, StoreError, WriteBatch};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One sealed commit to write: its layer, and the changelog offset each
/// partition's checkpoint reaches (known once its markers were delivered).
pub struct SealedWrite {
    pub layer: SealedLayer,
    pub changelog_next: Vec<(Partition, i64)>,
}

impl SealedWrite {
    /// The store batch it writes.
    pub fn batch(&self) -> WriteBatch {
        let mut batch = self.layer.to_batch();
        for (partition, next) in &self.changelog_next {
            batch.set_changelog_next_offset(*partition, *next);
        }
        batch
    }
}

/// Writes sealed commits, one at a time, in the order given.
pub trait StoreWriter {
    /// Starts writing; the previous write has finished.
    fn start(&mut self, write: SealedWrite) -> Result<(), StoreError>;

    /// Whether the write started last has finished (`Ok(None)`: not yet;
    /// with `wait`, waits for it), and how long the write itself took.
    fn finished(&mut self, wait: bool) -> Result<Option<Duration>, StoreError>;
}

/// A [`StoreWriter`] with its own thread, in a [`std::thread::scope`] that
/// outlives it (the store is borrowed). The thread ends when the writer is
/// dropped.
pub struct BackgroundWriter {
    to_thread: mpsc::Sender<SealedWrite>,
    done: mpsc::Receiver<Result<Duration, StoreError>>,
    /// A write was started and its result not yet taken.
    busy: bool,
}

impl BackgroundWriter {
    /// Spawns the writer's thread in `scope`.
    pub fn spawn<'scope, 'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        store: &'env dyn StateStore,
    ) -> Result<BackgroundWriter, StoreError> {
        let (to_thread, jobs) = mpsc::channel::<SealedWrite>();
        let (report, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn_scoped(scope, move || {
                for write in jobs {
                    let started = Instant::now();
                    let result = store.write(&write.batch()).map(|()| started.elapsed());
                    // Before the report: the loop, told the write is done,
                    // then holds the only reference and frees the layer when
                    // it forgets it (on its own thread: a few milliseconds
                    // for a large commit).
                    drop(write);
                    if report.send(result).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| StoreError(format!("starting the store writer thread: {e}")))?;
        Ok(BackgroundWriter { to_thread, done, busy: false })
    }
}

impl StoreWriter for BackgroundWriter {
    fn start(&mut self, write: SealedWrite) -> Result<(), StoreError> {
        assert!(!self.busy, "BackgroundWriter::start before the previous write finished");
        self.to_thread.send(write).map_err(|_| StoreError("the store writer thread has stopped".into()))?;
        self.busy = true;
        Ok(())
    }

    fn finished(&mut self, wait: bool) -> Result<Option<Duration>, StoreError> {
        if !self.busy {
            return Ok(Some(Duration::ZERO));
        }
        let result = if wait {
            self.done.recv().map_err(|_| StoreError("the store writer thread has stopped".into()))?
        } else {
            match self.done.try_recv() {
                Ok(result) => result,
                Err(mpsc::TryRecvError::Empty) => return Ok(None),
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(StoreError("the store writer thread has stopped".into()))
                }
            }
        };
        self.busy = false;
        result.map(Some)
    }
}

#[cfg(test)]
mod tests;
