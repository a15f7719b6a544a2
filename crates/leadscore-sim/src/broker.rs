//! A simulated Kafka-protocol broker, faithful where leadscore's guarantees
//! depend on it: partitioned logs with offsets, idempotent appends,
//! transactions with commit and abort markers, the last stable offset and
//! read_committed visibility, producer epochs that fence an older producer
//! of the same transactional id, log compaction, and (in [`crate::group`]) a
//! consumer group with generations and committed offsets.

use std::collections::{BTreeMap, BTreeSet};

/// One record of a partition's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Broker timestamp (sim milliseconds).
    pub timestamp: i64,
    /// The transaction that wrote it, if any: (producer id, transaction
    /// number of that producer).
    pub txn: Option<(u64, u64)>,
    /// A commit (`true`) or abort marker of `txn`, not a data record.
    pub control: Option<bool>,
    /// Removed by compaction (the offset stays taken).
    pub compacted: bool,
}

/// One topic-partition.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub records: Vec<Record>,
    /// Producer ids with a transaction open on this partition, and the offset
    /// of its first record here.
    open: BTreeMap<u64, i64>,
    /// Aborted transactions: (producer id, transaction number).
    aborted: BTreeSet<(u64, u64)>,
    /// Offset of a tombstone -> when a cleaning pass first saw it.
    tombstones_cleaned: BTreeMap<i64, i64>,
}

impl Log {
    pub fn end(&self) -> i64 {
        self.records.len() as i64
    }

    /// The last stable offset: nothing at or after it may be read committed.
    pub fn last_stable(&self) -> i64 {
        self.open.values().copied().min().unwrap_or_else(|| self.end())
    }

    /// Whether the record at `offset` is a data record a reader sees.
    pub fn visible(&self, offset: i64, read_committed: bool) -> bool {
        let Some(r) = self.records.get(offset as usize) else { return false };
        if r.control.is_some() || r.compacted {
            return false;
        }
        if !read_committed {
            return true;
        }
        if offset >= self.last_stable() {
            return false;
        }
        match r.txn {
            Some(t) => !self.aborted.contains(&t),
            None => true,
        }
    }

    /// The end a reader may read up to.
    pub fn readable_end(&self, read_committed: bool) -> i64 {
        if read_committed {
            self.last_stable()
        } else {
            self.end()
        }
    }
}

/// A transactional producer's state at the coordinator.
#[derive(Debug, Clone, Default)]
pub struct Transactional {
    pub producer_id: u64,
    pub epoch: u32,
    /// Transactions begun so far.
    pub number: u64,
    /// When the open transaction began.
    pub opened_at: i64,
    /// Partitions written in the open transaction.
    pub partitions: BTreeSet<(String, u32)>,
    /// Offsets to commit to the group with the transaction.
    pub offsets: Vec<(String, u32, i64)>,
    pub open: bool,
}

/// Why a transactional call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnError {
    /// A newer producer with this transactional id exists.
    Fenced,
    /// No transaction is open.
    NotOpen,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Broker {
    pub topics: BTreeMap<String, Vec<Log>>,
    transactional: BTreeMap<String, Transactional>,
    next_producer_id: u64,
    /// Transactions committed so far.
    pub committed: u64,
}

impl Broker {
    pub fn create_topic(&mut self, name: &str, partitions: u32) {
        self.topics.insert(name.to_string(), (0..partitions).map(|_| Log::default()).collect());
    }

    pub fn log(&self, topic: &str, partition: u32) -> Option<&Log> {
        self.topics.get(topic).and_then(|p| p.get(partition as usize))
    }

    fn log_mut(&mut self, topic: &str, partition: u32) -> &mut Log {
        self.topics
            .get_mut(topic)
            .and_then(|p| p.get_mut(partition as usize))
            .unwrap_or_else(|| panic!("no topic-partition {topic}/{partition} in the simulation"))
    }

    pub fn partitions(&self, topic: &str) -> u32 {
        self.topics.get(topic).map_or(0, |p| p.len() as u32)
    }

    /// Appends a record; its offset.
    pub fn append(&mut self, topic: &str, partition: u32, mut record: Record, txn_id: Option<&str>) -> i64 {
        if let Some(id) = txn_id {
            let t = self.transactional.get_mut(id).expect("an initialised transactional producer");
            record.txn = Some((t.producer_id, t.number));
            t.partitions.insert((topic.to_string(), partition));
        }
        let log = self.log_mut(topic, partition);
        let offset = log.end();
        if let Some((pid, _)) = record.txn {
            log.open.entry(pid).or_insert(offset);
        }
        log.records.push(record);
        offset
    }

    /// Registers (or re-registers) a transactional id: a new epoch, fencing the
    /// previous producer and aborting what it left open.
    pub fn init_transactions(&mut self, id: &str, now: i64) {
        let aborted = self.transactional.get(id).filter(|t| t.open).cloned();
        if let Some(t) = aborted {
            self.end_transaction(id, &t, false, now);
        }
        let pid = match self.transactional.get(id) {
            Some(t) => t.producer_id,
            None => {
                self.next_producer_id += 1;
                self.next_producer_id
            }
        };
        let (epoch, number) = self.transactional.get(id).map_or((0, 0), |t| (t.epoch + 1, t.number));
        self.transactional
            .insert(id.to_string(), Transactional { producer_id: pid, epoch, number, ..Default::default() });
    }

    /// Aborts transactions open since before `opened_before` (the
    /// coordinator's transaction timeout).
    pub fn expire_transactions(&mut self, opened_before: i64, now: i64) -> Vec<String> {
        let expired: Vec<(String, Transactional)> = self
            .transactional
            .iter()
            .filter(|(_, t)| t.open && t.opened_at < opened_before)
            .map(|(id, t)| (id.clone(), t.clone()))
            .collect();
        for (id, t) in &expired {
            self.end_transaction(id, t, false, now);
            // The producer learns at its next call: its epoch is bumped.
            if let Some(state) = self.transactional.get_mut(id) {
                state.epoch += 1;
            }
        }
        expired.into_iter().map(|(id, _)| id).collect()
    }

    /// The epoch a transactional id currently has.
    pub fn epoch(&self, id: &str) -> Option<u32> {
        self.transactional.get(id).map(|t| t.epoch)
    }

    fn current(&mut self, id: &str, epoch: u32) -> Result<&mut Transactional, TxnError> {
        match self.transactional.get_mut(id) {
            Some(t) if t.epoch == epoch => Ok(t),
            _ => Err(TxnError::Fenced),
        }
    }

    pub fn begin(&mut self, id: &str, epoch: u32, now: i64) -> Result<(), TxnError> {
        let t = self.current(id, epoch)?;
        t.open = true;
        t.opened_at = now;
        t.number += 1;
        t.partitions.clear();
        t.offsets.clear();
        Ok(())
    }

    pub fn check(&mut self, id: &str, epoch: u32) -> Result<(), TxnError> {
        let t = self.current(id, epoch)?;
        if !t.open {
            return Err(TxnError::NotOpen);
        }
        Ok(())
    }

    pub fn add_offsets(&mut self, id: &str, epoch: u32, offsets: Vec<(String, u32, i64)>) -> Result<(), TxnError> {
        self.check(id, epoch)?;
        self.current(id, epoch)?.offsets.extend(offsets);
        Ok(())
    }

    /// Commits or aborts the open transaction: markers on every partition it
    /// wrote; the offsets it carried, when committed.
    pub fn finish(
        &mut self,
        id: &str,
        epoch: u32,
        commit: bool,
        now: i64,
    ) -> Result<Vec<(String, u32, i64)>, TxnError> {
        self.check(id, epoch)?;
        let t = self.current(id, epoch)?.clone();
        self.end_transaction(id, &t, commit, now);
        self.committed += u64::from(commit);
        Ok(if commit { t.offsets } else { Vec::new() })
    }

    fn end_transaction(&mut self, id: &str, t: &Transactional, commit: bool, now: i64) {
        for (topic, partition) in &t.partitions {
            let log = self.log_mut(topic, *partition);
            log.open.remove(&t.producer_id);
            if !commit {
                log.aborted.insert((t.producer_id, t.number));
            }
            log.records.push(Record {
                key: Vec::new(),
                value: None,
                headers: Vec::new(),
                timestamp: now,
                txn: Some((t.producer_id, t.number)),
                control: Some(commit),
                compacted: false,
            });
        }
        if let Some(state) = self.transactional.get_mut(id) {
            state.open = false;
            state.partitions.clear();
            state.offsets.clear();
        }
    }

    /// Compacts a changelog partition as Kafka's cleaner does: only records
    /// stamped before `closed_before` (the closed segments; the active one is
    /// never cleaned) are considered, and of those, below the last stable
    /// offset, only the latest record of each key is kept. A tombstone is
    /// dropped too once `tombstone_retention` ms have passed since a pass
    /// first cleaned it (Kafka's `delete.retention.ms` counts from the
    /// cleaning of its segment): a reader that began before that pass, and
    /// so read the key's older values, still finds the tombstone.
    pub fn compact(&mut self, topic: &str, partition: u32, now: i64, closed_before: i64, tombstone_retention: i64) {
        let log = self.log_mut(topic, partition);
        let stable = log.last_stable();
        let cleanable: Vec<i64> = (0..stable).filter(|o| log.records[*o as usize].timestamp < closed_before).collect();
        let mut latest: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for &offset in &cleanable {
            if log.visible(offset, true) {
                latest.insert(log.records[offset as usize].key.clone(), offset);
            }
        }
        for offset in cleanable {
            let keep = latest.get(&log.records[offset as usize].key) == Some(&offset);
            let r = &log.records[offset as usize];
            if r.control.is_some() || r.compacted {
                continue;
            }
            let first_cleaned =
                if r.value.is_none() { Some(*log.tombstones_cleaned.entry(offset).or_insert(now)) } else { None };
            let r = &log.records[offset as usize];
            let dead_tombstone = first_cleaned.is_some_and(|c| now - c > tombstone_retention);
            let aborted = r.txn.is_some_and(|t| log.aborted.contains(&t));
            if !keep || dead_tombstone || aborted {
                log.records[offset as usize].compacted = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: Option<&str>, at: i64) -> Record {
        Record {
            key: key.as_bytes().to_vec(),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: Vec::new(),
            timestamp: at,
            txn: None,
            control: None,
            compacted: false,
        }
    }

    #[test]
    fn read_committed_sees_committed_records_only_and_stops_at_an_open_transaction() {
        let mut b = Broker::default();
        b.create_topic("t", 1);
        b.init_transactions("tx", 0);
        b.begin("tx", 0, 0).expect("begin");
        b.append("t", 0, record("a", Some("1"), 0), Some("tx"));
        b.append("t", 0, record("b", Some("plain"), 0), None);
        let log = b.log("t", 0).expect("log");
        assert_eq!(log.last_stable(), 0, "an open transaction holds the last stable offset");
        assert!(!log.visible(1, true) && log.visible(1, false));
        b.finish("tx", 0, false, 1).expect("abort");
        let log = b.log("t", 0).expect("log");
        assert_eq!((log.last_stable(), log.end()), (3, 3));
        assert!(!log.visible(0, true), "aborted");
        assert!(log.visible(1, true));
        assert!(!log.visible(2, true), "a marker");

        // A newer producer with the same id fences the old one.
        b.init_transactions("tx", 2);
        assert_eq!(b.begin("tx", 0, 2), Err(TxnError::Fenced));
        b.begin("tx", 1, 2).expect("begin");
        b.append("t", 0, record("c", Some("2"), 2), Some("tx"));
        assert_eq!(b.finish("tx", 1, true, 3), Ok(Vec::new()));
        assert!(b.log("t", 0).expect("log").visible(3, true));
    }

    #[test]
    fn compaction_keeps_the_latest_record_of_each_key_and_drops_tombstones_cleaned_long_ago() {
        let mut b = Broker::default();
        b.create_topic("c", 1);
        for (k, v, at) in
            [("a", Some("1"), 0), ("b", Some("1"), 0), ("a", Some("2"), 5), ("b", None, 6), ("c", None, 90)]
        {
            b.append("c", 0, record(k, v, at), None);
        }
        b.compact("c", 0, 100, 95, 50);
        let log = b.log("c", 0).expect("log");
        let kept: Vec<i64> = (0..log.end()).filter(|o| log.visible(*o, true)).collect();
        assert_eq!(kept, [2, 3, 4], "a's latest; the tombstones stay for the retention after their first cleaning");
        b.compact("c", 0, 151, 95, 50);
        let log = b.log("c", 0).expect("log");
        let kept: Vec<i64> = (0..log.end()).filter(|o| log.visible(*o, true)).collect();
        assert_eq!(kept, [2], "a's latest; both tombstones were cleaned over 50 ms ago");
        // Records of the active segment supersede nothing yet.
        let mut b = Broker::default();
        b.create_topic("c", 1);
        b.append("c", 0, record("a", Some("1"), 0), None);
        b.append("c", 0, record("a", Some("2"), 90), None);
        b.compact("c", 0, 100, 50, 50);
        let log = b.log("c", 0).expect("log");
        assert!(log.visible(0, true) && log.visible(1, true));
    }
}
