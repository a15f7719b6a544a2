//! A simulated local disk: the in-memory store, plus what a machine crash
//! would leave of it. Every write is atomic; writes since the last sync (the
//! operating system's, or the store's own with `sync_writes`) may be lost by
//! a machine crash, in order: a prefix of them survives. A process crash loses
//! nothing that was written.

use leadscore_store::memory::MemoryStore;
use leadscore_store::{Partition, StateStore, WriteBatch};
use leadscore_synth::Rng;

#[derive(Debug, Clone)]
enum Entry {
    Write(WriteBatch),
    Drop(Partition),
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct SimStore {
    pub current: MemoryStore,
    entries: Vec<Entry>,
    /// Entries up to here survive a machine crash.
    synced: usize,
}

impl SimStore {
    pub fn write(&mut self, batch: &WriteBatch, sync: bool) {
        self.current.write(batch).expect("the memory store cannot fail");
        self.entries.push(Entry::Write(batch.clone()));
        if sync {
            self.synced = self.entries.len();
        }
    }

    pub fn drop_partition(&mut self, partition: Partition, sync: bool) {
        self.current.drop_partition(partition).expect("the memory store cannot fail");
        self.entries.push(Entry::Drop(partition));
        if sync {
            self.synced = self.entries.len();
        }
    }

    /// The operating system writes everything back.
    pub fn sync(&mut self) {
        self.synced = self.entries.len();
    }

    /// A machine crash: the synced writes and a random prefix of the rest.
    pub fn machine_crash(&mut self, rng: &mut Rng) {
        let unsynced = self.entries.len() - self.synced;
        let keep = self.synced + rng.below(unsynced as u64 + 1) as usize;
        self.entries.truncate(keep);
        self.synced = keep;
        let store = MemoryStore::new();
        for e in &self.entries {
            match e {
                Entry::Write(b) => store.write(b).expect("the memory store cannot fail"),
                Entry::Drop(p) => store.drop_partition(*p).expect("the memory store cannot fail"),
            }
        }
        self.current = store;
    }
}
