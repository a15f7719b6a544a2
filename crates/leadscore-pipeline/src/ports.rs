//! The runtime's ports: what it needs from the world, as small traits, so that
//! the same loop runs on Kafka and RocksDB (the `leadscore-kafka` and
//! `leadscore-rocks` adapters), on in-memory fakes in tests, and in the
//! deterministic simulation (`leadscore-sim`).
//!
//! - [`Source`]: the input consumer group: messages and membership changes in
//!   the order they happened, where each input partition stands, offsets.
//! - [`Sink`]: the output producer: records, their acknowledgement, and
//!   transactions (begin, input offsets, commit, abort) for exactly once.
//! - [`Changelog`]: a reader of the changelog topic, for restores.
//! - [`Clock`]: the timers' clock and a monotonic one for scheduling.
//! - the state store is [`leadscore_store::StateStore`].
//!
//! Every call may fail with an error that says whether retrying the whole
//! loop (a restart from the last commit) can help.

use crate::aligner::Position;
use crate::messages::{InputMessage, OutputRecord};
use leadscore_core::Millis;
use leadscore_store::Partition;
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What the source reports, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    Message(InputMessage),
    /// Partition groups newly owned (every input topic of each). They stay
    /// paused until [`Source::resume`], once restored.
    Assigned(Vec<Partition>),
    /// Partition groups no longer owned. Messages of them reported before this
    /// event and not yet applied must not be applied: the new owner reads them
    /// again from the last commit.
    Revoked(Vec<Partition>),
}

/// The consumer group's identity of this member, for the changelog
/// (generation) and for exactly once (the adapter's own token, passed back to
/// [`Sink::send_offsets`] so that the group coordinator fences a member that
/// lost its partitions).
#[derive(Clone)]
pub struct GroupMetadata {
    pub generation: i64,
    pub token: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for GroupMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMetadata").field("generation", &self.generation).finish_non_exhaustive()
    }
}

/// An input offset: the next offset to read of one input topic-partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicOffset {
    pub topic: String,
    pub partition: Partition,
    pub next: i64,
}

/// How the source's client sees the brokers, for metrics and readiness.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceHealth {
    pub brokers_down: bool,
    /// (topic, partition, messages behind the end), as last reported.
    pub lag: Vec<(String, Partition, i64)>,
}

/// A failed port call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Retrying from the last commit may help (a broker unreachable, a
    /// delivery that failed, a transaction that had to be aborted).
    #[error("{0}")]
    Retriable(String),
    /// Another instance took over this one's identity (a newer producer with
    /// the same transactional id): this instance must stop.
    #[error("fenced: {0}")]
    Fenced(String),
    /// Cannot work at all (misconfiguration, missing topics, a broken client).
    #[error("{0}")]
    Fatal(String),
}

/// The input consumer group; see the module docs.
pub trait Source {
    /// Waits up to `timeout` for the first event, then takes what is already
    /// there, up to `max` events.
    fn poll(&mut self, timeout: Duration, max: usize, out: &mut Vec<SourceEvent>) -> Result<(), PortError>;

    /// Where an input topic-partition stands relative to `next` (the next
    /// offset its group expects; `None`: nothing fetched, no checkpoint).
    fn position(&mut self, topic: &str, partition: Partition, next: Option<i64>) -> Position;

    /// How long after a message was polled a [`Position::CaughtUp`] of another
    /// topic of its group can be trusted to include everything written before
    /// it (a client may report a message before it has read the rest of the
    /// same fetch response).
    fn settle(&self) -> Duration {
        Duration::ZERO
    }

    /// Starts delivering messages of an assigned partition group.
    fn resume(&mut self, partition: Partition) -> Result<(), PortError>;

    /// Stops fetching a partition group's messages (those already fetched
    /// are still delivered) until [`Source::resume`].
    fn pause(&mut self, partition: Partition) -> Result<(), PortError>;

    /// Records consumed offsets in the group (at least once; best effort: the
    /// store's checkpoint is what a restart trusts).
    fn commit(&mut self, offsets: &[TopicOffset]) -> Result<(), PortError>;

    /// This member's group identity (`None` before it joined).
    fn group(&self) -> Option<GroupMetadata>;

    /// The client's view of the brokers.
    fn health(&mut self) -> SourceHealth;
}

/// What a flush or a transaction commit found acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acked {
    /// Changelog partition -> offset of the last checkpoint marker delivered.
    pub markers: BTreeMap<Partition, i64>,
}

/// The end of the records sent so far, for [`Sink::delivered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(pub u64);

/// The output producer; see the module docs. Records of one key keep their
/// order, also across retries.
pub trait Sink {
    /// Queues records; those of one topic keep their order (Kafka orders
    /// nothing across topics).
    fn send(&mut self, records: &[OutputRecord]) -> Result<(), PortError>;

    /// Waits until every record sent since the last flush is acknowledged;
    /// fails if any of them was not delivered.
    fn flush(&mut self, timeout: Duration) -> Result<Acked, PortError>;

    /// Sends `records` and waits up to `timeout` until *they* are
    /// acknowledged (records sent before them to other partitions may still
    /// be in flight); fails if any of them was not delivered. Returns the
    /// checkpoint markers it found acknowledged, possibly none (those not
    /// reported here are reported by the next flush). By default a send and a
    /// [`Sink::flush`], which waits for everything sent before too.
    fn send_awaited(&mut self, records: &[OutputRecord], timeout: Duration) -> Result<Acked, PortError> {
        self.send(records)?;
        self.flush(timeout)
    }

    /// Marks the end of the records sent so far (and since the previous
    /// mark), so that a later [`Sink::delivered`] can tell whether they are
    /// acknowledged while more are sent meanwhile. At most one mark is
    /// outstanding: the previous one was found delivered first.
    fn mark(&mut self) -> Mark {
        Mark(0)
    }

    /// Whether every record sent before `mark` (and after the mark before
    /// it) is acknowledged: `Ok(None)` while some are in flight, unless
    /// `wait`, which waits up to `timeout` for them; fails if any was not
    /// delivered. The acknowledged checkpoint markers are those sent before
    /// `mark`. By default, a [`Sink::flush`]: it also waits for what was sent
    /// after the mark, and reports its markers too, which is only slower for
    /// a caller that sends no checkpoint marker after a mark before asking
    /// (the runtime's pipelined commit sends none).
    fn delivered(&mut self, mark: Mark, wait: bool, timeout: Duration) -> Result<Option<Acked>, PortError> {
        let _ = (mark, wait);
        self.flush(timeout).map(Some)
    }

    /// Opens a transaction (exactly once).
    fn begin(&mut self) -> Result<(), PortError>;

    /// Adds the input offsets to the open transaction, on behalf of `group`.
    fn send_offsets(
        &mut self,
        offsets: &[TopicOffset],
        group: &GroupMetadata,
        timeout: Duration,
    ) -> Result<(), PortError>;

    /// Commits the open transaction, its records delivered.
    fn commit(&mut self, timeout: Duration) -> Result<Acked, PortError>;

    /// Aborts the open transaction: none of its records become visible.
    fn abort(&mut self, timeout: Duration) -> Result<(), PortError>;
}

/// One record of the changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    pub offset: i64,
    pub key: Vec<u8>,
    /// `None`: a tombstone.
    pub value: Option<Vec<u8>>,
    /// The broker's timestamp (milliseconds since the epoch), if any.
    pub timestamp: Option<Millis>,
    pub kind: crate::messages::ChangelogKind,
    /// The writer's ownership epoch (header), if any.
    pub epoch: Option<i64>,
}

/// A reader of one changelog partition at a time, reading committed records
/// only.
pub trait Changelog {
    /// The first offset and the end of a changelog partition, open
    /// transactions included (a restore reads up to the end, so it waits for
    /// those to commit or abort).
    fn watermarks(&mut self, partition: Partition) -> Result<(i64, i64), PortError>;

    /// The partitions about to be restored, so that an adapter can ask for all
    /// their watermarks at once (one request instead of one per partition).
    fn prepare(&mut self, partitions: &[Partition]) -> Result<(), PortError> {
        let _ = partitions;
        Ok(())
    }

    /// Starts reading `partition` at `from` (replacing any other partition).
    fn start(&mut self, partition: Partition, from: i64) -> Result<(), PortError>;

    /// Waits up to `timeout` for records, then takes what is there, up to `max`.
    fn read(&mut self, timeout: Duration, max: usize, out: &mut Vec<ChangelogRecord>) -> Result<(), PortError>;

    /// The next offset the reader will deliver: transaction markers and aborted
    /// records take offsets but are never delivered.
    fn position(&mut self) -> Option<i64>;

    /// Stops reading.
    fn stop(&mut self);
}

/// Time, as the runtime sees it.
pub trait Clock {
    /// The timers' clock in wall-clock mode, and what event-time lag is
    /// measured against: milliseconds since the epoch (the demo compresses it).
    fn now(&self) -> Millis;

    /// Real milliseconds since the epoch (broker timestamps are in it).
    fn wall(&self) -> Millis;

    /// Monotonic time, for scheduling ticks and waits.
    fn elapsed(&self) -> Duration;
}

/// The system clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    started: std::time::Instant,
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock { started: std::time::Instant::now() }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        self.wall()
    }

    fn wall(&self) -> Millis {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A clock whose timers' time stands still (event-time runs and tests); the
/// wall and monotonic clocks are the system's.
#[derive(Debug, Clone, Copy, Default)]
pub struct FixedClock {
    pub now: Millis,
    system: SystemClock,
}

impl FixedClock {
    pub fn at(now: Millis) -> FixedClock {
        FixedClock { now, system: SystemClock::default() }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Millis {
        self.now
    }

    fn wall(&self) -> Millis {
        self.system.wall()
    }

    fn elapsed(&self) -> Duration {
        self.system.elapsed()
    }
}
