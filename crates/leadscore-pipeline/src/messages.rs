//! Messages in and records out, as owned plain data: Kafka types are converted at
//! the adapter's edge.

use leadscore_core::{Kind, Millis};
use std::collections::BTreeMap;

/// One consumed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputMessage {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// The broker's timestamp, if any (not event time).
    pub timestamp: Option<Millis>,
}

impl InputMessage {
    /// A placeholder (no topic, no content).
    pub fn empty() -> InputMessage {
        InputMessage { topic: String::new(), partition: 0, offset: -1, key: None, payload: None, timestamp: None }
    }
}

/// Where an output record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputTopic {
    ScoreChanges,
    Transitions,
    DeadLetters,
    /// Same partition as the input partition.
    Changelog,
}

/// One record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub topic: OutputTopic,
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone (an erased lead's changelog record).
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// Set for changelog records: the input partition they belong to.
    pub partition: Option<u32>,
}

impl OutputRecord {
    /// The changelog record that closes a step: empty key (no lead id is empty),
    /// the step's [`leadscore_store::Checkpoint`] as value. A restore applies the
    /// changelog up to the last of these; records after it belong to a step that
    /// did not commit and will be replayed from the inputs.
    pub fn checkpoint_marker(partition: u32, checkpoint: &leadscore_store::Checkpoint) -> OutputRecord {
        OutputRecord {
            topic: OutputTopic::Changelog,
            key: Some(Vec::new()),
            value: Some(checkpoint.encode()),
            headers: vec![(headers::CHANGELOG_RECORD, b"checkpoint".to_vec())],
            partition: Some(partition),
        }
    }

    /// A lead's state in the changelog (`None`: a tombstone for an erased
    /// lead), stamped with the writer's epoch.
    pub fn changelog_state(partition: u32, lead: &str, value: Option<Vec<u8>>, epoch: Option<i64>) -> OutputRecord {
        OutputRecord {
            topic: OutputTopic::Changelog,
            key: Some(lead.as_bytes().to_vec()),
            value,
            headers: Vec::new(),
            partition: Some(partition),
        }
        .with_epoch(epoch)
    }

    /// The checkpoint marker as a step or a commit publishes it: without a
    /// changelog offset (it learns its own on delivery), stamped with the
    /// writer's epoch.
    pub fn changelog_marker(
        partition: u32,
        checkpoint: &leadscore_store::Checkpoint,
        epoch: Option<i64>,
    ) -> OutputRecord {
        let marker = leadscore_store::Checkpoint { changelog_next_offset: None, ..checkpoint.clone() };
        OutputRecord::checkpoint_marker(partition, &marker).with_epoch(epoch)
    }

    /// Exactly once: the changelog record that puts a changelog partition
    /// into the open transaction with the first step of its input partition
    /// (the states follow at the commit). A restore ignores it; what it is
    /// for is that a new owner restoring meanwhile finds the transaction open
    /// on the partition and waits for its end (docs/runtime.md, "Exactly once").
    pub fn changelog_opener(partition: u32, epoch: Option<i64>) -> OutputRecord {
        OutputRecord {
            topic: OutputTopic::Changelog,
            key: Some(OPEN_KEY.to_vec()),
            value: None,
            headers: vec![(headers::CHANGELOG_RECORD, b"open".to_vec())],
            partition: Some(partition),
        }
        .with_epoch(epoch)
    }

    /// Adds the writer's ownership epoch header, if it has one.
    pub fn with_epoch(mut self, epoch: Option<i64>) -> OutputRecord {
        if let Some(e) = epoch {
            self.headers.push((headers::CHANGELOG_EPOCH, e.to_string().into_bytes()));
        }
        self
    }

    pub fn is_checkpoint_marker(&self) -> bool {
        self.topic == OutputTopic::Changelog && self.key.as_deref() == Some(&[])
    }

    /// The changelog record published before a step's outputs in at-least-once
    /// wall-clock mode: how to replay the step (its key is no lead id's, nor
    /// the checkpoint markers', so that compaction keeps the latest of each).
    pub fn replay_marker(partition: u32, replay: &leadscore_store::Replay) -> OutputRecord {
        OutputRecord {
            topic: OutputTopic::Changelog,
            key: Some(REPLAY_KEY.to_vec()),
            value: Some(replay.encode()),
            headers: vec![(headers::CHANGELOG_RECORD, b"replay".to_vec())],
            partition: Some(partition),
        }
    }
}

/// The key of replay markers: not UTF-8, so never a lead id.
pub const REPLAY_KEY: &[u8] = &[0xff];

/// The key of transaction openers: not UTF-8 either, and not the replay
/// markers' key, so that compaction keeps the latest of each apart.
pub const OPEN_KEY: &[u8] = &[0xfe];

/// What a changelog record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangelogKind {
    /// A lead's state (or, without a value, its erasure).
    State,
    /// The checkpoint that closes a step.
    Checkpoint,
    /// How to replay the step that follows (at least once, wall clock).
    Replay,
    /// Exactly once: opens the writer's transaction on the partition
    /// ([`OutputRecord::changelog_opener`]); nothing to apply.
    Open,
    /// Neither (not written by leadscore): ignored.
    Unknown,
}

impl ChangelogKind {
    /// Classifies a record by its key and its `leadscore.changelog.record` header.
    pub fn of(key: &[u8], record_header: Option<&[u8]>) -> ChangelogKind {
        match (key, record_header) {
            ([], Some(b"checkpoint")) => ChangelogKind::Checkpoint,
            (REPLAY_KEY, Some(b"replay")) => ChangelogKind::Replay,
            (OPEN_KEY, Some(b"open")) => ChangelogKind::Open,
            ([], _) | (REPLAY_KEY, _) | (OPEN_KEY, _) => ChangelogKind::Unknown,
            _ => ChangelogKind::State,
        }
    }
}

/// Record headers: the dead-letter headers of the input contract
/// (docs/events.md), and the changelog's own.
pub mod headers {
    pub const ERROR_CLASS: &str = "leadscore.error.class";
    pub const ERROR_MESSAGE: &str = "leadscore.error.message";
    pub const SOURCE_TOPIC: &str = "leadscore.source.topic";
    pub const SOURCE_PARTITION: &str = "leadscore.source.partition";
    pub const SOURCE_OFFSET: &str = "leadscore.source.offset";
    /// On the dead letter of an oversized message (whose value is cut to its
    /// first 64 KiB): the original value's size in bytes.
    pub const ORIGINAL_SIZE: &str = "leadscore.error.original_size";
    /// The same for a truncated key.
    pub const ORIGINAL_KEY_SIZE: &str = "leadscore.error.original_key_size";
    /// On changelog checkpoint and replay markers (not a dead-letter header).
    pub const CHANGELOG_RECORD: &str = "leadscore.changelog.record";
    /// On changelog records: the writer's ownership epoch of the partition,
    /// so that a restore ignores what a former owner wrote late.
    pub const CHANGELOG_EPOCH: &str = "leadscore.changelog.epoch";
}

/// Topic names and the kind each input topic carries (`None`: any kind, `type`
/// required).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub inputs: BTreeMap<String, Option<Kind>>,
    pub score_changes: String,
    pub transitions: String,
    pub dead_letters: String,
    pub changelog: String,
}

impl Default for Topics {
    /// The default topic names (docs/events.md), the single place they are set.
    fn default() -> Topics {
        let inputs = [
            ("page-views", Some(Kind::PageView)),
            ("email-clicks", Some(Kind::EmailClick)),
            ("downloads", Some(Kind::Download)),
            ("email-bounces", Some(Kind::EmailBounce)),
            ("lead-events", None),
            ("lead-profiles", None),
        ]
        .into_iter()
        .map(|(t, k)| (t.to_string(), k))
        .collect();
        Topics {
            inputs,
            score_changes: "lead-score-changes".into(),
            transitions: "lead-segment-transitions".into(),
            dead_letters: "lead-events-dlq".into(),
            changelog: "leadscore-state-changelog".into(),
        }
    }
}

impl Topics {
    /// The position of an input topic in `inputs` (their sorted order).
    pub fn input_index(&self, topic: &str) -> Option<u16> {
        self.inputs.keys().position(|t| t == topic).map(|i| i as u16)
    }

    pub fn input_name(&self, index: u16) -> Option<&str> {
        self.inputs.keys().nth(index as usize).map(String::as_str)
    }

    pub fn name(&self, topic: OutputTopic) -> &str {
        match topic {
            OutputTopic::ScoreChanges => &self.score_changes,
            OutputTopic::Transitions => &self.transitions,
            OutputTopic::DeadLetters => &self.dead_letters,
            OutputTopic::Changelog => &self.changelog,
        }
    }
}

/// What a record adds to its key and value at most: leadscore's headers
/// (error messages are cut at 1 KiB, topic names at 249 bytes) and Kafka's
/// record framing.
pub const RECORD_OVERHEAD: usize = 4096;

/// The largest record leadscore publishes under `model` and `limits`: a dead
/// letter (a message within `max_message_bytes`, or the truncated copy of a
/// larger one), a lead's changelog record (the model's largest state, see
/// [`leadscore_store::max_state_bytes`]), or an output record (far smaller).
/// The producer's `message.max.bytes` must allow it.
pub fn largest_record(model: &leadscore_core::Model, limits: &leadscore_codec::Limits) -> usize {
    let (state, _) = leadscore_store::max_state_bytes(model);
    let dead_letter = limits.max_message_bytes.max(2 * crate::processor::DEAD_LETTER_SAMPLE_BYTES);
    let changelog = usize::try_from(state).unwrap_or(usize::MAX).saturating_add(limits.max_lead_id_bytes);
    dead_letter.max(changelog).saturating_add(RECORD_OVERHEAD)
}
