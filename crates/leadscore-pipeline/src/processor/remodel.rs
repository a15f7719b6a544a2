//! Model changes in a running partition (docs/model-changes.md).
//!
//! A step whose checkpoint was written under another model switches the
//! partition: the checkpoint now names the current model first and keeps the
//! layouts of earlier ones, records the switch instant, and carries its
//! per-segment member counts over by segment name. A lead migrates when a
//! step first loads it (an event, a timer, or the sweep): its state moves to
//! the current layout by name and is re-evaluated as of the switch instant,
//! publishing what changed with cause `model_change`. The sweep visits
//! [`SWEEP_LEADS`] leads of the partition per step, in lead order, until all
//! are on the current model; then the checkpoint forgets earlier layouts.

use super::work::Work;
use super::StepError;
use leadscore_core::engine::remodel;
use leadscore_core::layout::{segment_moves, Retired};
use leadscore_core::{LeadId, LeadState, Millis, Model};
use leadscore_store::{Checkpoint, ModelLayout};

/// Switches `c` to `model` if it was written under another; `at` is the
/// switch instant (`None`: each lead's own clock). Returns whether it switched.
pub(super) fn switch_model(c: &mut Checkpoint, model: &Model, at: Option<Millis>) -> bool {
    let Some(previous) = c.layouts.first() else {
        // A new partition, or one written before models were fingerprinted:
        // its states are taken to be this model's, as they always were.
        c.layouts = vec![ModelLayout::of(model)];
        return false;
    };
    if previous.fingerprint == model.fingerprint() {
        return false;
    }
    if c.model_version == model.version {
        tracing::warn!(
            model_version = %model.version,
            "the model changed but its version did not: downstream cannot tell records of the two models apart; \
             give every model change a new version"
        );
    }
    let moves = segment_moves(&previous.layout, model.layout());
    let mut members = vec![0i64; model.segments.len()];
    for (i, count) in c.counts.members.iter().enumerate() {
        if let Some(Some(j)) = moves.get(i) {
            members[*j] += count;
        }
    }
    c.counts.members = members;
    c.layouts.retain(|l| l.fingerprint != model.fingerprint());
    c.layouts.insert(0, ModelLayout::of(model));
    c.switched_at = at;
    c.sweep_after = None;
    tracing::info!(
        from = %c.model_version,
        to = %model.version,
        "model changed: leads are re-evaluated under the new model as they are next touched"
    );
    c.model_version = model.version.clone();
    true
}

/// Leads a step's sweep visits.
pub const SWEEP_LEADS: usize = 256;

impl Work<'_, '_> {
    /// The next page of the sweep under way, if any (see the module docs).
    pub(super) fn sweep(&mut self) -> Result<(), StepError> {
        if self.checkpoint.layouts.len() <= 1 {
            return Ok(());
        }
        let after = self.checkpoint.sweep_after.clone();
        let ids = self.p.store.lead_ids(self.partition, after.as_deref(), SWEEP_LEADS)?;
        self.step.swept = true;
        let Some(last) = ids.last() else {
            // Every lead is on the current model now.
            self.checkpoint.layouts.truncate(1);
            self.checkpoint.sweep_after = None;
            tracing::info!(partition = self.partition, "every lead is migrated to the current model");
            return Ok(());
        };
        self.checkpoint.sweep_after = Some(last.to_string());
        let names: Vec<&str> = ids.iter().map(LeadId::as_str).collect();
        self.load(&names)
    }

    /// Re-evaluates a lead just migrated from an earlier model and publishes
    /// what changed (cause `model_change`).
    pub(super) fn remodel(
        &mut self,
        lead: &LeadId,
        state: &mut LeadState,
        retired: Vec<Retired>,
    ) -> Result<(), StepError> {
        let at = self.switched_at().unwrap_or(state.clock);
        remodel(self.p.model, state, at, retired, &mut self.out);
        self.step.observations.migrated += 1;
        self.emit(lead, None)
    }
}
