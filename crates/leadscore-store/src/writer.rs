//! Writing a sealed commit, or a restore's chunk of states, to the store off
//! the loop's thread.
//!
//! A RocksDB write of a commit (each changed lead's state, timer moves,
//! checkpoints; tens of megabytes a second at full load) took 20-50 ms of the
//! loop's time per commit, and every event that arrived meanwhile waited for
//! it. The runtime instead hands the commit's sealed layer
//! ([`crate::overlay::Overlay::sealed_layer`]) to a [`StoreWriter`] and goes on
//! processing, reading the layer through the overlay until the writer says it
//! is done. A restore likewise hands each chunk of states it read from the
//! changelog ([`StoreWriter::start_batch`]) and reads on. [`BackgroundWriter`]
//! is the service's writer, one thread; the simulation has its own
//! (`leadscore_sim::ports::SimWriter`), which lands a write at a later turn of
//! its scheduler. Every runtime has a writer.

use crate::overlay::SealedLayer;
use crate::{Checkpoint, OpRef, Partition, StateStore, StoreError, WriteBatch};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One sealed commit to write: its layer, and the changelog offset each
/// partition's checkpoint reaches (known once its markers were delivered).
pub struct SealedWrite {
    pub layer: SealedLayer,
    pub changelog_next: Vec<(Partition, i64)>,
}

impl SealedWrite {
    /// The layer's checkpoints, each with the changelog offset it reaches.
    fn checkpoints(&self) -> Vec<(Partition, Checkpoint)> {
        let mut checkpoints: Vec<(Partition, Checkpoint)> =
            self.layer.checkpoints().map(|(p, c)| (p, c.clone())).collect();
        for (partition, next) in &self.changelog_next {
            for (p, checkpoint) in &mut checkpoints {
                if p == partition {
                    checkpoint.changelog_next_offset = Some(*next);
                }
            }
        }
        checkpoints
    }

    /// Writes it to `store` straight from the layer: each state is copied
    /// once, into the store's own batch. Copying the layer into a
    /// [`WriteBatch`] first held a second copy of every state of the commit
    /// (peak RSS 10-30 MiB lower without it on `leadscore bench`).
    pub fn write_to(&self, store: &dyn StateStore) -> Result<(), StoreError> {
        let checkpoints = self.checkpoints();
        let mut ops = self.layer.refs(checkpoints.iter().map(|(p, c)| (*p, c)));
        store.write_refs(&mut ops, self.layer.bytes())
    }

    /// The store batch it writes, copied.
    pub fn batch(&self) -> WriteBatch {
        let checkpoints = self.checkpoints();
        WriteBatch { ops: self.layer.refs(checkpoints.iter().map(|(p, c)| (*p, c))).map(OpRef::to_op).collect() }
    }
}

/// Writes sealed commits (and a restore's batches), one at a time, in the
/// order given.
pub trait StoreWriter {
    /// Starts writing; the previous write has finished.
    fn start(&mut self, write: SealedWrite) -> Result<(), StoreError>;

    /// Starts writing a batch as it is (a restore's chunk of states, which
    /// the restore reads on while it is written); the previous write has
    /// finished.
    fn start_batch(&mut self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Whether the write started last has finished (`Ok(None)`: not yet;
    /// with `wait`, waits for it), and how long the write itself took.
    fn finished(&mut self, wait: bool) -> Result<Option<Duration>, StoreError>;

    /// Frees a written layer the overlay forgot. A commit's layer is tens of
    /// thousands of allocations, a few milliseconds to free: a writer with a
    /// thread of its own frees it there, off the caller's.
    fn dispose(&mut self, layer: SealedLayer) {
        drop(layer);
    }
}

/// What the writer's thread is given.
enum Job {
    Write(SealedWrite),
    Batch(WriteBatch),
    Dispose(SealedLayer),
}

/// A [`StoreWriter`] with its own thread, in a [`std::thread::scope`] that
/// outlives it (the store is borrowed). The thread ends when the writer is
/// dropped.
pub struct BackgroundWriter {
    to_thread: mpsc::Sender<Job>,
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
        let (to_thread, jobs) = mpsc::channel::<Job>();
        let (report, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn_scoped(scope, move || {
                for job in jobs {
                    let started = Instant::now();
                    let result = match job {
                        Job::Write(write) => {
                            let result = write.write_to(store);
                            // Before the report: the overlay's reference is then
                            // the last, and comes back here to be freed (`dispose`).
                            drop(write);
                            result
                        }
                        Job::Batch(batch) => store.write(&batch),
                        Job::Dispose(layer) => {
                            drop(layer);
                            continue;
                        }
                    };
                    if report.send(result.map(|()| started.elapsed())).is_err() {
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
        self.to_thread.send(Job::Write(write)).map_err(|_| StoreError("the store writer thread has stopped".into()))?;
        self.busy = true;
        Ok(())
    }

    fn start_batch(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        assert!(!self.busy, "BackgroundWriter::start_batch before the previous write finished");
        self.to_thread.send(Job::Batch(batch)).map_err(|_| StoreError("the store writer thread has stopped".into()))?;
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

    fn dispose(&mut self, layer: SealedLayer) {
        // A stopped thread hands the layer back, and it is freed here.
        let _ = self.to_thread.send(Job::Dispose(layer));
    }
}

/// A [`StoreWriter`] that writes on the caller's thread as soon as a write
/// starts: for tests and tools with no thread to spare.
pub struct InlineWriter<'s> {
    pub store: &'s dyn StateStore,
}

impl StoreWriter for InlineWriter<'_> {
    fn start(&mut self, write: SealedWrite) -> Result<(), StoreError> {
        write.write_to(self.store)
    }

    fn start_batch(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.store.write(&batch)
    }

    fn finished(&mut self, _: bool) -> Result<Option<Duration>, StoreError> {
        Ok(Some(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests;
