//! The RocksDB [`StateStore`]: one database per instance with three column
//! families, written in one `WriteBatch` per commit (built straight from the
//! commit's sealed overlay layer, [`StateStore::write_refs`]).
//!
//! | column family | key | value |
//! |---|---|---|
//! | `state` | partition u32 BE + lead id | encoded lead state |
//! | `timers` | partition u32 BE + due (order-preserving u64 BE) + lead id | empty |
//! | `meta` | partition u32 BE | encoded [`Checkpoint`] |
//!
//! Memory is bounded by configuration: one LRU block cache shared by the column
//! families, and a write-buffer manager charging memtables to that same cache.
//! The WAL stays on; whether each batch waits for fsync is a setting
//! (`sync_writes`): without it a process crash loses nothing, a machine crash
//! may lose the last batches, which the changelog restores.

use leadscore_core::{LeadId, Millis};
use leadscore_store::keys::{
    parse_timer_key, partition_prefix, partition_upper_bound, put_state_key, put_timer_key, state_key,
    timer_scan_start, timer_upper_bound,
};
use leadscore_store::{Checkpoint, Op, OpRef, Partition, StateStore, StoreError, WriteBatch};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions,
    WriteBufferManager, WriteOptions, DB,
};
use std::path::Path;

const CF_STATE: &str = "state";
const CF_TIMERS: &str = "timers";
const CF_META: &str = "meta";

/// Sizing of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RocksSettings {
    /// Block cache shared by all column families, in bytes.
    pub block_cache_bytes: usize,
    /// Budget of all memtables, in bytes, charged to the block cache.
    pub write_buffer_bytes: usize,
    /// Wait for fsync on every batch.
    pub sync_writes: bool,
}

impl Default for RocksSettings {
    fn default() -> RocksSettings {
        RocksSettings { block_cache_bytes: 256 << 20, write_buffer_bytes: 64 << 20, sync_writes: false }
    }
}

/// See the module documentation.
pub struct RocksStore {
    db: DB,
    cache: Cache,
    write_options: WriteOptions,
}

/// An upper estimate of the bytes a RocksDB batch of `ops` ops holding
/// `bytes` of lead ids and values takes: its header, and per op a tag, a
/// column family id, two length varints and the partition (and due time) of
/// the key, for a state put and a timer's delete and put each. Overshooting
/// costs little: pages of the reservation that are never written are never
/// touched.
fn batch_capacity(bytes: usize, ops: usize) -> usize {
    12 + bytes * 3 / 2 + ops * 96
}

fn err(e: rocksdb::Error) -> StoreError {
    StoreError(e.into_string())
}

impl RocksStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path, settings: &RocksSettings) -> Result<RocksStore, StoreError> {
        let cache = Cache::new_lru_cache(settings.block_cache_bytes);
        let wbm =
            WriteBufferManager::new_write_buffer_manager_with_cache(settings.write_buffer_bytes, false, cache.clone());
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_bloom_filter(10.0, false);
        let cf_options = || {
            let mut o = Options::default();
            o.set_block_based_table_factory(&table);
            o.set_write_buffer_manager(&wbm);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o
        };
        let mut db_options = cf_options();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        let cfs = [CF_STATE, CF_TIMERS, CF_META].map(|name| ColumnFamilyDescriptor::new(name, cf_options()));
        let db = DB::open_cf_descriptors(&db_options, path, cfs)
            .map_err(|e| StoreError(format!("cannot open {}: {}", path.display(), e.into_string())))?;
        let mut write_options = WriteOptions::default();
        write_options.set_sync(settings.sync_writes);
        Ok(RocksStore { db, cache, write_options })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    /// Bytes held by the block cache (including memtables charged to it).
    pub fn block_cache_usage(&self) -> usize {
        self.cache.get_usage()
    }

    /// Bytes held by all memtables.
    pub fn memtable_bytes(&self) -> u64 {
        [CF_STATE, CF_TIMERS, CF_META]
            .iter()
            .filter_map(|cf| {
                self.db.property_int_value_cf(self.cf(cf), "rocksdb.cur-size-all-mem-tables").ok().flatten()
            })
            .sum()
    }

    /// RocksDB's estimate of the number of leads in state.
    pub fn estimated_leads(&self) -> u64 {
        self.db.property_int_value_cf(self.cf(CF_STATE), "rocksdb.estimate-num-keys").ok().flatten().unwrap_or(0)
    }
}

impl StateStore for RocksStore {
    fn get_states(&self, partition: Partition, leads: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let cf = self.cf(CF_STATE);
        let keys: Vec<Vec<u8>> = leads.iter().map(|l| state_key(partition, l)).collect();
        self.db.multi_get_cf(keys.iter().map(|k| (cf, k.as_slice()))).into_iter().map(|r| r.map_err(err)).collect()
    }

    fn lead_ids(&self, partition: Partition, after: Option<&str>, limit: usize) -> Result<Vec<LeadId>, StoreError> {
        let prefix = partition_prefix(partition);
        let start = after.map_or_else(|| prefix.clone(), |l| state_key(partition, l));
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(partition_upper_bound(partition));
        let iter = self.db.iterator_cf_opt(self.cf(CF_STATE), read, IteratorMode::From(&start, Direction::Forward));
        let mut out = Vec::new();
        for item in iter {
            let (key, _) = item.map_err(err)?;
            if after.is_some() && *key == *start {
                continue;
            }
            out.push(LeadId::from(String::from_utf8_lossy(&key[prefix.len()..]).into_owned()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn due_timers(
        &self,
        partition: Partition,
        after: Option<(Millis, &str)>,
        up_to: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, LeadId)>, StoreError> {
        let (start, end) = (timer_scan_start(partition, after), timer_upper_bound(partition, up_to));
        if start >= end {
            return Ok(Vec::new());
        }
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(end);
        let iter = self.db.iterator_cf_opt(self.cf(CF_TIMERS), read, IteratorMode::From(&start, Direction::Forward));
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (key, _) = item.map_err(err)?;
            let (_, due, lead) =
                parse_timer_key(&key).ok_or_else(|| StoreError(format!("malformed timer key {key:?}")))?;
            out.push((due, LeadId::from(lead)));
        }
        Ok(out)
    }

    fn checkpoint(&self, partition: Partition) -> Result<Option<Checkpoint>, StoreError> {
        match self.db.get_cf(self.cf(CF_META), partition.to_be_bytes()).map_err(err)? {
            Some(bytes) => Checkpoint::decode(&bytes)
                .map(Some)
                .map_err(|e| StoreError(format!("checkpoint of partition {partition}: {e}"))),
            None => Ok(None),
        }
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let bytes = batch
            .ops
            .iter()
            .map(|op| if let Op::PutState { lead, value, .. } = op { lead.as_str().len() + value.len() } else { 0 })
            .sum();
        self.write_refs(&mut batch.ops.iter().map(Op::as_ref), bytes)
    }

    fn write_refs(&self, ops: &mut dyn Iterator<Item = OpRef<'_>>, bytes: usize) -> Result<(), StoreError> {
        let (state, timers, meta) = (self.cf(CF_STATE), self.cf(CF_TIMERS), self.cf(CF_META));
        // Sized at once: grown op by op, a commit's batch of tens of
        // megabytes was copied and its fresh pages zeroed at each doubling.
        let mut wb = rocksdb::WriteBatch::with_capacity_bytes(batch_capacity(bytes, ops.size_hint().0));
        let mut key = Vec::with_capacity(64);
        for op in ops {
            match op {
                OpRef::PutState { partition, lead, value } => {
                    put_state_key(&mut key, partition, lead);
                    wb.put_cf(state, &key, value)
                }
                OpRef::DeleteState { partition, lead } => {
                    put_state_key(&mut key, partition, lead);
                    wb.delete_cf(state, &key)
                }
                OpRef::MoveTimer { partition, lead, old, new } => {
                    if let Some(old) = old {
                        put_timer_key(&mut key, partition, old, lead);
                        wb.delete_cf(timers, &key);
                    }
                    if let Some(new) = new {
                        put_timer_key(&mut key, partition, new, lead);
                        wb.put_cf(timers, &key, []);
                    }
                }
                OpRef::Checkpoint { partition, checkpoint } => {
                    wb.put_cf(meta, partition.to_be_bytes(), checkpoint.encode())
                }
            }
        }
        self.db.write_opt(wb, &self.write_options).map_err(err)
    }

    fn drop_partition(&self, partition: Partition) -> Result<(), StoreError> {
        let mut wb = rocksdb::WriteBatch::default();
        let (from, to) = (partition_prefix(partition), partition_upper_bound(partition));
        wb.delete_range_cf(self.cf(CF_STATE), &from, &to);
        wb.delete_range_cf(self.cf(CF_TIMERS), &from, &to);
        wb.delete_cf(self.cf(CF_META), partition.to_be_bytes());
        self.db.write_opt(wb, &self.write_options).map_err(err)
    }

    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_META), IteratorMode::Start) {
            let (key, _) = item.map_err(err)?;
            let bytes: [u8; 4] =
                key.as_ref().try_into().map_err(|_| StoreError(format!("malformed checkpoint key {key:?}")))?;
            out.push(Partition::from_be_bytes(bytes));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_store::memory::check_store_contract;

    #[test]
    fn rocks_store_keeps_the_contract() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RocksStore::open(dir.path(), &RocksSettings::default()).expect("open");
        check_store_contract(&store);
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let store = RocksStore::open(dir.path(), &RocksSettings::default()).expect("open");
            let mut b = WriteBatch::default();
            b.put_state(0, LeadId::from("L-1"), vec![1, 2, 3]);
            b.move_timer(0, LeadId::from("L-1"), None, Some(77));
            store.write(&b).expect("write");
        }
        let store = RocksStore::open(dir.path(), &RocksSettings::default()).expect("reopen");
        assert_eq!(store.get_states(0, &["L-1"]).expect("get"), vec![Some(vec![1, 2, 3])]);
        assert_eq!(store.due_timers(0, None, 100, 10).expect("timers"), vec![(77, LeadId::from("L-1"))]);
        assert!(store.block_cache_usage() > 0 || store.memtable_bytes() > 0 || store.estimated_leads() > 0);
    }

    /// Everything a store holds, read back through the port.
    fn contents(store: &dyn StateStore) -> Vec<String> {
        let mut out = Vec::new();
        for p in store.partitions().expect("partitions") {
            out.push(format!("{p}: {:?}", store.checkpoint(p).expect("checkpoint")));
            let leads = store.lead_ids(p, None, 1000).expect("leads");
            let ids: Vec<&str> = leads.iter().map(LeadId::as_str).collect();
            out.push(format!(
                "{p}: {:?}",
                ids.iter().zip(store.get_states(p, &ids).expect("states")).collect::<Vec<_>>()
            ));
            out.push(format!("{p}: {:?}", store.due_timers(p, None, Millis::MAX - 1, 1000).expect("timers")));
        }
        out
    }

    #[test]
    fn a_sealed_layer_written_straight_reads_back_as_its_copied_batch() {
        use leadscore_store::memory::MemoryStore;
        use leadscore_store::overlay::Overlay;
        use leadscore_store::writer::SealedWrite;
        let dir = tempfile::tempdir().expect("temp dir");
        let rocks = RocksStore::open(dir.path(), &RocksSettings::default()).expect("open");
        let memory = MemoryStore::new();
        let mut before = WriteBatch::default();
        for p in 0..3 {
            before.put_state(p, LeadId::from("gone"), vec![9]);
            before.move_timer(p, LeadId::from("gone"), None, Some(5));
            before.move_timer(p, LeadId::from("back"), None, Some(8));
        }
        rocks.write(&before).expect("rocks");
        memory.write(&before).expect("memory");
        let overlays = [Overlay::new(&rocks), Overlay::new(&memory)];
        for overlay in &overlays {
            let mut b = WriteBatch::default();
            for p in 0..3 {
                for l in 0..50u32 {
                    let lead = LeadId::from(format!("L-{p}-{l}"));
                    b.put_state(p, lead.clone(), vec![l as u8; 1 + l as usize * 7]);
                    b.move_timer(p, lead, None, Some(i64::from(l) * 10 - 100));
                }
                b.delete_state(p, LeadId::from("gone"));
                b.move_timer(p, LeadId::from("gone"), Some(5), None);
                // Moved and moved back: nothing to write.
                b.move_timer(p, LeadId::from("back"), Some(8), Some(9));
                b.move_timer(p, LeadId::from("back"), Some(9), Some(8));
                b.checkpoint(p, Checkpoint { changelog_next_offset: Some(1), ..Checkpoint::default() });
            }
            overlay.stage(b);
            overlay.seal();
        }
        let write = |o: &Overlay<'_>| SealedWrite { layer: o.sealed_layer(), changelog_next: vec![(1, 77), (2, 78)] };
        write(&overlays[0]).write_to(&rocks).expect("rocks, straight");
        memory.write(&write(&overlays[1]).batch()).expect("memory, copied");
        let (rocks_has, memory_has) = (contents(&rocks), contents(&memory));
        assert_eq!(rocks_has, memory_has);
        assert!(rocks_has.iter().any(|c| c.contains("Some(78)")), "{rocks_has:?}");
        assert!(rocks_has.iter().any(|c| c.contains("(8, \"back\")")), "{rocks_has:?}");
        assert!(!rocks_has.iter().any(|c| c.contains("gone")), "{rocks_has:?}");
    }

    #[test]
    fn batch_capacity_covers_a_batch_of_leads_and_timer_moves() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RocksStore::open(dir.path(), &RocksSettings::default()).expect("open");
        let (state, timers) = (store.cf(CF_STATE), store.cf(CF_TIMERS));
        let mut wb = rocksdb::WriteBatch::default();
        let mut bytes = 0;
        for l in 0..1000u32 {
            let (key, value) = (state_key(7, &format!("lead-{l}")), vec![0u8; 20 + (l as usize % 300)]);
            bytes += key.len() - 4 + value.len();
            wb.put_cf(state, &key, &value);
            wb.delete_cf(timers, leadscore_store::keys::timer_key(7, 1, &format!("lead-{l}")));
            wb.put_cf(timers, leadscore_store::keys::timer_key(7, 2, &format!("lead-{l}")), []);
        }
        assert!(
            batch_capacity(bytes, 1000) >= wb.size_in_bytes(),
            "{} < {}",
            batch_capacity(bytes, 1000),
            wb.size_in_bytes()
        );
    }

    #[test]
    fn opening_a_file_that_is_not_a_database_names_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write");
        let e = RocksStore::open(&file, &RocksSettings::default()).err().expect("an error");
        assert!(e.0.contains("not-a-dir"), "{e}");
    }
}
