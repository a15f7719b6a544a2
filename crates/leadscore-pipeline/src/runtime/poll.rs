//! How long each poll of the source may wait: as long as nothing is due (the
//! configured poll timeout), briefly while a restore, a merge or a sealed
//! commit waits on the broker, and never past the next commit or the end of
//! a merge's settle, so that what is due then is not late by a poll.

use super::Runtime;
use leadscore_core::Millis;
use std::time::Duration;

/// How long a poll waits while a restore or a merge is waiting on the broker.
pub(super) const SHORT_POLL: Duration = Duration::from_millis(5);

impl Runtime<'_> {
    /// The timeout of a poll that starts at `elapsed` on the loop's clock.
    pub(super) fn poll_timeout(&self, elapsed: Duration) -> Duration {
        let mut timeout = if self.restoring.is_some() || self.merging || self.has_restores_queued() {
            SHORT_POLL.min(self.settings.poll_timeout)
        } else {
            self.settings.poll_timeout
        };
        if let Some(left) = self.until_commit(elapsed) {
            timeout = timeout.min(left);
        }
        if self.sealed.is_some() {
            // Its acknowledgements come in within milliseconds.
            timeout = timeout.min(SHORT_POLL);
        }
        if let Some(at) = self.merge_wakes_at {
            timeout = timeout.min(Duration::from_millis(at.max(0) as Millis as u64).saturating_sub(elapsed));
        }
        timeout
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Owned, Ports};
    use super::*;
    use crate::aligner::Arrival;
    use crate::messages::{InputMessage, OutputRecord};
    use crate::ports::{
        Acked, Changelog, ChangelogRecord, GroupMetadata, PortError, Sink, Source, SourceEvent, SourceHealth,
    };
    use crate::ports::{FixedClock, TopicOffset};
    use crate::runtime::settings::RuntimeSettings;
    use crate::{Position, TimeMode};
    use leadscore_core::{Event, Kind};
    use leadscore_store::memory::MemoryStore;
    use leadscore_store::writer::{SealedWrite, StoreWriter};
    use leadscore_store::{Partition, StoreError};
    use leadscore_telemetry::Telemetry;

    /// Ports for a loop that only merges: every other topic is caught up,
    /// and nothing is published or written.
    struct Merging;

    impl Source for Merging {
        fn poll(&mut self, _: Duration, _: usize, _: &mut Vec<SourceEvent>) -> Result<(), PortError> {
            Ok(())
        }
        fn position(&mut self, _: &str, _: Partition, _: Option<i64>) -> Position {
            Position::CaughtUp
        }
        fn resume(&mut self, _: Partition) -> Result<(), PortError> {
            Ok(())
        }
        fn pause(&mut self, _: Partition) -> Result<(), PortError> {
            Ok(())
        }
        fn commit(&mut self, _: &[TopicOffset]) -> Result<(), PortError> {
            Ok(())
        }
        fn group(&self) -> Option<GroupMetadata> {
            None
        }
        fn health(&mut self) -> SourceHealth {
            SourceHealth::default()
        }
    }

    impl Sink for Merging {
        fn send(&mut self, _: &[OutputRecord]) -> Result<(), PortError> {
            unreachable!("nothing is published")
        }
        fn flush(&mut self, _: Duration) -> Result<Acked, PortError> {
            unreachable!("nothing is published")
        }
        fn begin(&mut self) -> Result<(), PortError> {
            unreachable!("at least once")
        }
        fn send_offsets(&mut self, _: &[TopicOffset], _: &GroupMetadata, _: Duration) -> Result<(), PortError> {
            unreachable!("at least once")
        }
        fn commit(&mut self, _: Duration) -> Result<Acked, PortError> {
            unreachable!("at least once")
        }
        fn abort(&mut self, _: Duration) -> Result<(), PortError> {
            unreachable!("at least once")
        }
    }

    impl Changelog for Merging {
        fn watermarks(&mut self, _: Partition) -> Result<(i64, i64), PortError> {
            Ok((0, 0))
        }
        fn start(&mut self, _: Partition, _: i64) -> Result<(), PortError> {
            Ok(())
        }
        fn read(&mut self, _: Duration, _: usize, _: &mut Vec<ChangelogRecord>) -> Result<(), PortError> {
            Ok(())
        }
        fn position(&mut self) -> Option<i64> {
            None
        }
        fn stop(&mut self) {}
    }

    impl StoreWriter for Merging {
        fn start(&mut self, _: SealedWrite) -> Result<(), StoreError> {
            unreachable!("nothing is written")
        }
        fn start_batch(&mut self, _: leadscore_store::WriteBatch) -> Result<(), StoreError> {
            unreachable!("nothing is restored")
        }
        fn finished(&mut self, _: bool) -> Result<Option<Duration>, StoreError> {
            Ok(Some(Duration::ZERO))
        }
    }

    #[test]
    fn a_merge_waiting_out_a_settle_polls_only_until_it_ends() {
        let settings = RuntimeSettings { time_mode: TimeMode::EventTime, ..RuntimeSettings::default() };
        let (model, store, telemetry) = (leadscore_config::seed_model(), MemoryStore::new(), Telemetry::default());
        let mut runtime = Runtime::new(&settings, &model, &store, &telemetry, Duration::from_millis(10));
        let (mut source, mut sink, mut changelog, mut writer) = (Merging, Merging, Merging, Merging);
        let clock = FixedClock::at(0);
        let mut ports = Ports {
            source: &mut source,
            sink: &mut sink,
            changelog: &mut changelog,
            clock: &clock,
            writer: &mut writer,
        };
        runtime.owned.insert(0, Owned { active: true, ..Owned::default() });
        let idle = runtime.poll_timeout(ports.clock.elapsed());
        assert_eq!(idle, settings.poll_timeout, "nothing to wait for");
        // Fetched 7 ms before the loop's clock started: on the strength of
        // the other topics being caught up, it goes 3 ms after it started.
        let message = InputMessage {
            topic: "page-views".into(),
            partition: 0,
            offset: 0,
            key: None,
            payload: None,
            timestamp: None,
        };
        let event = Event::new("e-1", "lead-1", Kind::PageView, 1_000);
        runtime.aligner.push(Arrival { message, event: Ok(event), fetched_at: -7, schema_wait: None });
        let steps = runtime.process(&mut ports).expect("processed");
        assert!(steps.is_empty() && runtime.merging, "held until it settles");
        let timeout = runtime.poll_timeout(ports.clock.elapsed());
        assert!(timeout <= Duration::from_millis(3), "the poll returns when the settle ends, not after {timeout:?}");
        assert!(runtime.poll_timeout(Duration::from_millis(4)).is_zero(), "past it: at once");
    }
}
