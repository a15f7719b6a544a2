use super::*;
use crate::memory::MemoryStore;
use crate::overlay::Overlay;
use crate::{Checkpoint, LeadId};

fn staged_commit(overlay: &Overlay<'_>) {
    let mut b = WriteBatch::default();
    b.put_state(0, LeadId::from("L-1"), vec![1, 2, 3]);
    b.move_timer(0, LeadId::from("L-1"), None, Some(50));
    b.checkpoint(0, Checkpoint { next_offsets: [("t".to_string(), 7)].into_iter().collect(), ..Checkpoint::default() });
    overlay.stage(b);
}

#[test]
fn a_background_write_lands_whole_with_its_changelog_offsets() {
    let durable = MemoryStore::new();
    let overlay = Overlay::new(&durable);
    staged_commit(&overlay);
    overlay.seal();
    std::thread::scope(|scope| {
        let mut writer = BackgroundWriter::spawn(scope, &durable).expect("writer");
        assert!(writer.finished(false).expect("idle").is_some(), "nothing started: nothing to wait for");
        writer.start(SealedWrite { layer: overlay.sealed_layer(), changelog_next: vec![(0, 42)] }).expect("started");
        // Until it is done, and after, readers of the overlay see the same.
        assert_eq!(overlay.get_states(0, &["L-1"]).unwrap(), vec![Some(vec![1, 2, 3])]);
        writer.finished(true).expect("written").expect("waited for");
    });
    overlay.forget_sealed();
    assert!(!overlay.is_sealed());
    assert_eq!(durable.get_states(0, &["L-1"]).unwrap(), vec![Some(vec![1, 2, 3])]);
    assert_eq!(durable.due_timers(0, None, 100, 10).unwrap(), vec![(50, LeadId::from("L-1"))]);
    let checkpoint = durable.checkpoint(0).unwrap().expect("checkpointed");
    assert_eq!(checkpoint.next_offsets.get("t"), Some(&7));
    assert_eq!(checkpoint.changelog_next_offset, Some(42));
}

#[test]
fn a_background_batch_lands_as_given_and_reports_when_it_is_done() {
    let durable = MemoryStore::new();
    std::thread::scope(|scope| {
        let mut writer = BackgroundWriter::spawn(scope, &durable).expect("writer");
        for value in [1u8, 2] {
            let mut b = WriteBatch::default();
            b.put_state(3, LeadId::from("L-1"), vec![value]);
            let old = (value > 1).then(|| i64::from(value - 1));
            b.move_timer(3, LeadId::from("L-1"), old, Some(i64::from(value)));
            writer.start_batch(b).expect("started");
            writer.finished(true).expect("written").expect("waited for");
            assert_eq!(durable.get_states(3, &["L-1"]).unwrap(), vec![Some(vec![value])]);
        }
        assert_eq!(
            durable.due_timers(3, None, 100, 10).unwrap(),
            vec![(2, LeadId::from("L-1"))],
            "the timer where the second batch moved it"
        );
        // Each wait took its own batch's result: none is left over.
        assert!(writer.done.recv_timeout(Duration::from_millis(200)).is_err(), "a batch reported twice");
        assert_eq!(writer.finished(false).expect("idle"), Some(Duration::ZERO), "nothing started since");
    });
}

/// A store whose writes fail.
struct Broken;

impl StateStore for Broken {
    fn get_states(&self, _: Partition, leads: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        Ok(vec![None; leads.len()])
    }
    fn due_timers(
        &self,
        _: Partition,
        _: Option<(leadscore_core::Millis, &str)>,
        _: leadscore_core::Millis,
        _: usize,
    ) -> Result<Vec<(leadscore_core::Millis, LeadId)>, StoreError> {
        Ok(Vec::new())
    }
    fn lead_ids(&self, _: Partition, _: Option<&str>, _: usize) -> Result<Vec<LeadId>, StoreError> {
        Ok(Vec::new())
    }
    fn checkpoint(&self, _: Partition) -> Result<Option<Checkpoint>, StoreError> {
        Ok(None)
    }
    fn write(&self, _: &WriteBatch) -> Result<(), StoreError> {
        Err(StoreError("disk full".into()))
    }
    fn drop_partition(&self, _: Partition) -> Result<(), StoreError> {
        Ok(())
    }
    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        Ok(Vec::new())
    }
}

#[test]
fn a_failed_background_write_is_reported() {
    let overlay = Overlay::new(&Broken);
    staged_commit(&overlay);
    overlay.seal();
    std::thread::scope(|scope| {
        let mut writer = BackgroundWriter::spawn(scope, &Broken).expect("writer");
        writer.start(SealedWrite { layer: overlay.sealed_layer(), changelog_next: Vec::new() }).expect("started");
        let e = writer.finished(true).expect_err("the write failed");
        assert!(e.to_string().contains("disk full"), "{e}");
    });
}

#[test]
fn a_failed_background_batch_is_reported() {
    std::thread::scope(|scope| {
        let mut writer = BackgroundWriter::spawn(scope, &Broken).expect("writer");
        let mut b = WriteBatch::default();
        b.put_state(0, LeadId::from("L-1"), vec![1]);
        writer.start_batch(b).expect("started");
        let e = writer.finished(true).expect_err("the write failed");
        assert!(e.to_string().contains("disk full"), "{e}");
    });
}

#[test]
fn a_disposed_layer_does_not_count_as_a_finished_write() {
    let durable = MemoryStore::new();
    let overlay = Overlay::new(&durable);
    std::thread::scope(|scope| {
        let mut writer = BackgroundWriter::spawn(scope, &durable).expect("writer");
        for value in [1u8, 2] {
            let mut b = WriteBatch::default();
            b.put_state(0, LeadId::from("L-1"), vec![value]);
            overlay.stage(b);
            overlay.seal();
            writer.start(SealedWrite { layer: overlay.sealed_layer(), changelog_next: Vec::new() }).expect("started");
            writer.finished(true).expect("written").expect("waited for");
            assert_eq!(durable.get_states(0, &["L-1"]).unwrap(), vec![Some(vec![value])]);
            writer.dispose(overlay.forget_sealed());
            assert!(!overlay.is_sealed());
        }
        // Each wait took its own write's result: none is left over.
        assert!(writer.done.recv_timeout(Duration::from_millis(200)).is_err(), "a disposal reported a write");
    });
}
