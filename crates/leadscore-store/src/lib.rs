//! What leadscore's pipeline needs from a state store, without any storage
//! engine: the [`StateStore`] port, the versioned binary encoding of lead state
//! and checkpoints, and an in-memory store for tests and the offline path.
//!
//! Like TiKV's `engine_traits`, this crate must not depend on RocksDB; the
//! RocksDB implementation is `leadscore-rocks`.
//!
//! # Layout
//!
//! - [`encoding`]: lead state to bytes and back, versioned.
//! - [`checkpoint`]: where a partition's processing stands, and its encoding.
//! - [`keys`]: the byte layout of state and timer keys (ordered scans by due time).
//! - [`memory`]: an in-memory store, and the contract test every store passes.
//! - [`overlay`]: staged writes in front of a store, committed once per interval.
//! - [`writer`]: writing a sealed commit on another thread.

pub mod checkpoint;
pub mod encoding;
pub mod keys;
pub mod memory;
pub mod overlay;
pub mod writer;

pub use checkpoint::{Checkpoint, Counts, ModelLayout, Replay};
pub use encoding::{
    decode_migrating, decode_state, encode_state, max_state_bytes, peek_next_due, state_model, DecodeStateError,
};

use leadscore_core::{LeadId, Millis};

/// A partition of the input topics (a partition group when there are several
/// co-partitioned topics).
pub type Partition = u32;

/// A failed store operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(pub String);

/// One write of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Sets a lead's encoded state.
    PutState { partition: Partition, lead: LeadId, value: Vec<u8> },
    /// Forgets a lead (erase).
    DeleteState { partition: Partition, lead: LeadId },
    /// Moves a lead's timer from `old` to `new` (either may be absent).
    MoveTimer { partition: Partition, lead: LeadId, old: Option<Millis>, new: Option<Millis> },
    /// Records how far the partition's processing has come. Boxed: a
    /// checkpoint is a few hundred bytes and the other ops a few dozen, and
    /// a step pushes one op per lead it moved.
    Checkpoint { partition: Partition, checkpoint: Box<Checkpoint> },
}

impl Op {
    /// The op, borrowed.
    pub fn as_ref(&self) -> OpRef<'_> {
        match self {
            Op::PutState { partition, lead, value } => {
                OpRef::PutState { partition: *partition, lead: lead.as_str(), value }
            }
            Op::DeleteState { partition, lead } => OpRef::DeleteState { partition: *partition, lead: lead.as_str() },
            Op::MoveTimer { partition, lead, old, new } => {
                OpRef::MoveTimer { partition: *partition, lead: lead.as_str(), old: *old, new: *new }
            }
            Op::Checkpoint { partition, checkpoint } => OpRef::Checkpoint { partition: *partition, checkpoint },
        }
    }
}

/// An [`Op`] whose data stays where it is (in a sealed overlay layer), so
/// that a store copies each state once, into its own batch, instead of into
/// an owned [`WriteBatch`] first ([`StateStore::write_refs`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpRef<'a> {
    PutState { partition: Partition, lead: &'a str, value: &'a [u8] },
    DeleteState { partition: Partition, lead: &'a str },
    MoveTimer { partition: Partition, lead: &'a str, old: Option<Millis>, new: Option<Millis> },
    Checkpoint { partition: Partition, checkpoint: &'a Checkpoint },
}

impl OpRef<'_> {
    /// The op, copied.
    pub fn to_op(self) -> Op {
        match self {
            OpRef::PutState { partition, lead, value } => {
                Op::PutState { partition, lead: LeadId::from(lead), value: value.to_vec() }
            }
            OpRef::DeleteState { partition, lead } => Op::DeleteState { partition, lead: LeadId::from(lead) },
            OpRef::MoveTimer { partition, lead, old, new } => {
                Op::MoveTimer { partition, lead: LeadId::from(lead), old, new }
            }
            OpRef::Checkpoint { partition, checkpoint } => {
                Op::Checkpoint { partition, checkpoint: Box::new(checkpoint.clone()) }
            }
        }
    }
}

/// Writes that become visible together or not at all: the states, timers and
/// input offsets produced by one poll batch. This atomicity is what makes an
/// event applied exactly once to the state, whatever the crash.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub ops: Vec<Op>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn put_state(&mut self, partition: Partition, lead: LeadId, value: Vec<u8>) {
        self.ops.push(Op::PutState { partition, lead, value });
    }

    pub fn delete_state(&mut self, partition: Partition, lead: LeadId) {
        self.ops.push(Op::DeleteState { partition, lead });
    }

    pub fn move_timer(&mut self, partition: Partition, lead: LeadId, old: Option<Millis>, new: Option<Millis>) {
        if old != new {
            self.ops.push(Op::MoveTimer { partition, lead, old, new });
        }
    }

    pub fn checkpoint(&mut self, partition: Partition, checkpoint: Checkpoint) {
        self.ops.push(Op::Checkpoint { partition, checkpoint: Box::new(checkpoint) });
    }
}

/// The state of the partitions an instance owns: encoded lead states, the timer
/// index, and a checkpoint per partition.
pub trait StateStore: Send + Sync {
    /// The encoded states of `leads`, in the order asked (`None`: no such lead).
    fn get_states(&self, partition: Partition, leads: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Whether reading many states in one [`StateStore::get_states`] is much
    /// cheaper than reading them one at a time (a disk store's batched
    /// lookups): then a step reads the states it will need up front. An
    /// in-memory store answers `false`, and a step reads each lead when it
    /// first needs it.
    fn reads_in_batches(&self) -> bool {
        true
    }

    /// Up to `limit` timers of the partition due at or before `up_to`, earliest
    /// first (ties by lead id), starting after the timer `after` if given (to
    /// page through many).
    fn due_timers(
        &self,
        partition: Partition,
        after: Option<(Millis, &str)>,
        up_to: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, LeadId)>, StoreError>;

    /// Up to `limit` leads of the partition that have a state, in lead-id
    /// (byte) order, after the lead `after` if given. An empty answer means
    /// there are no more (a shorter one does not).
    fn lead_ids(&self, partition: Partition, after: Option<&str>, limit: usize) -> Result<Vec<LeadId>, StoreError>;

    /// How far the partition's processing has come, if it ever started here.
    fn checkpoint(&self, partition: Partition) -> Result<Option<Checkpoint>, StoreError>;

    /// Applies every op of the batch atomically and durably (all or none).
    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError>;

    /// [`StateStore::write`] of borrowed ops, in the order given; `bytes` is
    /// roughly how many bytes of keys and values they hold, for sizing the
    /// store's own batch. The default copies them into a [`WriteBatch`].
    fn write_refs(&self, ops: &mut dyn Iterator<Item = OpRef<'_>>, bytes: usize) -> Result<(), StoreError> {
        let _ = bytes;
        self.write(&WriteBatch { ops: ops.map(OpRef::to_op).collect() })
    }

    /// Forgets everything of a partition, atomically.
    fn drop_partition(&self, partition: Partition) -> Result<(), StoreError>;

    /// The partitions that have a checkpoint here, in order.
    fn partitions(&self) -> Result<Vec<Partition>, StoreError>;
}
