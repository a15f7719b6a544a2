//! Tests of the overlay module.

use super::*;
use crate::memory::{check_store_contract, MemoryStore};

#[test]
fn an_overlay_keeps_the_store_contract_before_and_after_it_is_taken() {
    let durable = MemoryStore::new();
    let overlay = Overlay::new(&durable);
    check_store_contract(&overlay);
    // The same through staged writes taken into the durable store at
    // every step.
    let durable = MemoryStore::new();
    let overlay = Overlay::new(&durable);
    let through = Through(&overlay, &durable);
    check_store_contract(&through);
}

#[test]
fn lead_ids_merge_staged_states_and_deletions_with_the_durable_ones() {
    let durable = MemoryStore::new();
    let mut b = WriteBatch::default();
    for l in ["L-a", "L-b", "L-d"] {
        b.put_state(0, LeadId::from(l), b"x".to_vec());
    }
    durable.write(&b).expect("durable");
    let overlay = Overlay::new(&durable);
    let mut b = WriteBatch::default();
    b.delete_state(0, LeadId::from("L-a"));
    b.delete_state(0, LeadId::from("L-b"));
    b.put_state(0, LeadId::from("L-c"), b"y".to_vec());
    b.put_state(0, LeadId::from("L-e"), b"z".to_vec());
    overlay.write(&b).expect("staged");
    for limit in [1, 2, 3] {
        let (mut seen, mut after): (Vec<LeadId>, Option<LeadId>) = (Vec::new(), None);
        loop {
            let page = overlay.lead_ids(0, after.as_ref().map(LeadId::as_str), limit).expect("page");
            let Some(last) = page.last().cloned() else { break };
            assert!(page.len() <= limit);
            seen.extend(page);
            after = Some(last);
        }
        assert_eq!(seen, ["L-c", "L-d", "L-e"].map(LeadId::from), "pages of {limit}");
    }
}

#[test]
fn a_taken_batch_is_in_partition_and_lead_order_whatever_was_staged_first() {
    let durable = MemoryStore::new();
    let overlay = Overlay::new(&durable);
    let mut b = WriteBatch::default();
    for (p, l) in [(2, "L-c"), (1, "L-b"), (2, "L-a"), (1, "L-a")] {
        b.put_state(p, LeadId::from(l), vec![1]);
        b.move_timer(p, LeadId::from(l), None, Some(5));
    }
    overlay.stage(b);
    let order: Vec<String> = overlay
        .take()
        .ops
        .iter()
        .map(|op| match op {
            Op::PutState { partition, lead, .. } => format!("state {partition}/{}", lead.as_str()),
            Op::MoveTimer { partition, lead, .. } => format!("timer {partition}/{}", lead.as_str()),
            other => format!("{other:?}"),
        })
        .collect();
    let want = ["1/L-a", "1/L-b", "2/L-a", "2/L-c"];
    let states: Vec<String> = want.iter().map(|k| format!("state {k}")).collect();
    let timers: Vec<String> = want.iter().map(|k| format!("timer {k}")).collect();
    assert_eq!(order, [states, timers].concat());
}

/// Stages each write and commits it at once: what the runtime does with a
/// commit interval of zero.
struct Through<'o, 's>(&'o Overlay<'s>, &'s MemoryStore);

impl StateStore for Through<'_, '_> {
    fn get_states(&self, p: Partition, leads: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.0.get_states(p, leads)
    }
    fn due_timers(
        &self,
        p: Partition,
        after: Option<(Millis, &str)>,
        up_to: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, LeadId)>, StoreError> {
        self.0.due_timers(p, after, up_to, limit)
    }
    fn lead_ids(&self, p: Partition, after: Option<&str>, limit: usize) -> Result<Vec<LeadId>, StoreError> {
        self.0.lead_ids(p, after, limit)
    }
    fn checkpoint(&self, p: Partition) -> Result<Option<Checkpoint>, StoreError> {
        self.0.checkpoint(p)
    }
    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.0.write(batch)?;
        self.1.write(&self.0.take())
    }
    fn drop_partition(&self, p: Partition) -> Result<(), StoreError> {
        self.0.drop_partition(p)
    }
    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        self.0.partitions()
    }
}

/// One write of a generated history: a few leads and instants, so that
/// leads and timers are touched again and again.
#[derive(Debug, Clone)]
enum Write {
    Put(u32, u8, u8),
    Delete(u32, u8),
    Timer(u32, u8, Option<i8>),
    Checkpoint(u32, i64),
    /// Commit what is staged to the durable store.
    Take,
    /// Set what is staged aside (if nothing is sealed yet).
    Seal,
    /// Write the sealed layer to the durable store, then forget it.
    Release,
}

fn write() -> impl proptest::strategy::Strategy<Value = Write> {
    use proptest::prelude::*;
    prop_oneof![
        (0..2u32, 0..6u8, any::<u8>()).prop_map(|(p, l, v)| Write::Put(p, l, v)),
        (0..2u32, 0..6u8).prop_map(|(p, l)| Write::Delete(p, l)),
        (0..2u32, 0..6u8, proptest::option::of(-3..4i8)).prop_map(|(p, l, d)| Write::Timer(p, l, d)),
        (0..2u32, 0..100i64).prop_map(|(p, o)| Write::Checkpoint(p, o)),
        Just(Write::Take),
        Just(Write::Seal),
        Just(Write::Release),
    ]
}

fn lead(l: u8) -> LeadId {
    LeadId::from(format!("L-{l}"))
}

/// Everything a reader can see of a store.
fn view(s: &dyn StateStore) -> Vec<String> {
    let names: Vec<String> = (0..6u8).map(|l| lead(l).as_str().to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut v = Vec::new();
    for p in 0..2 {
        v.push(format!("{:?}", s.get_states(p, &names).unwrap()));
        v.push(format!("{:?}", s.due_timers(p, None, i64::MAX, 100).unwrap()));
        // Paging one timer at a time finds the same, in order.
        let mut paged = Vec::new();
        let mut after: Option<(Millis, LeadId)> = None;
        loop {
            let page = s.due_timers(p, after.as_ref().map(|(d, l)| (*d, l.as_str())), 2, 1).unwrap();
            let Some(t) = page.into_iter().next() else { break };
            paged.push(t.clone());
            after = Some(t);
        }
        v.push(format!("{paged:?}"));
        v.push(format!("{:?}", s.checkpoint(p).unwrap()));
    }
    v.push(format!("{:?}", s.partitions().unwrap()));
    v
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Whatever is staged and whenever it is taken (or sealed, then
    /// written and forgotten, with more staged on top meanwhile), readers of the overlay
    /// see what a store written directly shows, and after the last take the
    /// durable store holds exactly that.
    #[test]
    fn reads_through_an_overlay_equal_direct_writes(writes in proptest::collection::vec(write(), 0..60)) {
        let direct = MemoryStore::new();
        let durable = MemoryStore::new();
        let overlay = Overlay::new(&durable);
        // Where each lead's timer is, as the writer knows it.
        let mut timers: HashMap<(u32, u8), Millis> = HashMap::new();
        let mut sealed_copy = None;
        for w in writes {
            let mut b = WriteBatch::default();
            match w {
                Write::Put(p, l, v) => b.put_state(p, lead(l), vec![v; 1 + v as usize % 4]),
                Write::Delete(p, l) => b.delete_state(p, lead(l)),
                Write::Timer(p, l, due) => {
                    let new = due.map(Millis::from);
                    let old = match new {
                        Some(n) => timers.insert((p, l), n),
                        None => timers.remove(&(p, l)),
                    };
                    b.move_timer(p, lead(l), old, new);
                }
                Write::Checkpoint(p, o) => b.checkpoint(
                    p,
                    Checkpoint { next_offsets: [("t".to_string(), o)].into_iter().collect(), ..Checkpoint::default() },
                ),
                Write::Take => {
                    sealed_copy = None;
                    durable.write(&overlay.sealed_batch()).unwrap();
                    overlay.forget_sealed();
                    durable.write(&overlay.take()).unwrap();
                    proptest::prop_assert!(overlay.is_empty());
                    proptest::prop_assert_eq!(view(&overlay), view(&direct));
                    continue;
                }
                Write::Seal => {
                    if !overlay.is_sealed() {
                        overlay.seal();
                        let copy = overlay.sealed_batch();
                        proptest::prop_assert!(overlay.is_empty());
                        // The changelog is the batch without its timer moves.
                        let mut changelog = copy.clone();
                        changelog.ops.retain(|op| !matches!(op, Op::MoveTimer { .. }));
                        let sliced: Vec<Op> = overlay.sealed_changelog().collect();
                        proptest::prop_assert_eq!(overlay.sealed_changelog().len(), sliced.len());
                        proptest::prop_assert_eq!(&sliced, &changelog.ops);
                        // The copy is what a writer will write.
                        sealed_copy = Some(copy);
                    }
                    proptest::prop_assert_eq!(view(&overlay), view(&direct));
                    continue;
                }
                Write::Release => {
                    // As a writer on another thread does: from the shared
                    // layer, read meanwhile, then forgotten.
                    let batch = overlay.sealed_layer().to_batch();
                    if let Some(copy) = sealed_copy.take() {
                        proptest::prop_assert_eq!(&batch, &copy);
                    }
                    proptest::prop_assert_eq!(view(&overlay), view(&direct));
                    durable.write(&batch).unwrap();
                    proptest::prop_assert_eq!(view(&overlay), view(&direct));
                    overlay.forget_sealed();
                    proptest::prop_assert!(!overlay.is_sealed());
                    proptest::prop_assert_eq!(view(&overlay), view(&direct));
                    continue;
                }
            }
            direct.write(&b).unwrap();
            overlay.write(&b).unwrap();
            proptest::prop_assert_eq!(view(&overlay), view(&direct));
        }
        durable.write(&overlay.sealed_batch()).unwrap();
        overlay.forget_sealed();
        durable.write(&overlay.take()).unwrap();
        proptest::prop_assert_eq!(view(&durable), view(&direct));
        proptest::prop_assert_eq!(overlay.bytes(), 0);
    }
}
