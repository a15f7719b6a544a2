//! The opportunities of a history (`opportunity_update` events): when each
//! opened, how it ended, when, and for how much. An opportunity is known by
//! its lead and `opportunity_id`; it opens at its first update, closes at its
//! first `closed_won` or `closed_lost`, and its amount is the last one given.

use crate::{Input, ReviewError};
use leadscore_codec::{decode_json, Limits};
use leadscore_core::event::{Field, Stage, Value};
use leadscore_core::{Kind, Millis};
use std::collections::BTreeMap;
use std::io::BufRead;

/// How an opportunity ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Won,
    Lost,
    /// Not closed by the end of the history.
    Open,
}

/// One opportunity.
#[derive(Debug, Clone, PartialEq)]
pub struct Deal {
    pub lead: String,
    pub id: String,
    pub opened: Millis,
    pub closed: Option<Millis>,
    pub outcome: Outcome,
    pub amount: Option<f64>,
}

/// Every opportunity of `input`, in the order they opened (ties by lead and
/// id). Lines that are not valid events are skipped here: the scoring pass
/// reports them.
pub fn read(input: &Input) -> Result<Vec<Deal>, ReviewError> {
    let mut deals: BTreeMap<(String, String), Deal> = BTreeMap::new();
    let limits = Limits::default();
    for line in input.open()?.split(b'\n') {
        let line = line?;
        let Ok(e) = decode_json(&line, None, None, &limits) else { continue };
        if e.kind != Kind::OpportunityUpdate {
            continue;
        }
        let Some(Value::Text(id)) = e.properties.get(Field::OpportunityId) else { continue };
        let key = (e.lead_id.to_string(), id.to_string());
        let deal = deals.entry(key).or_insert_with(|| Deal {
            lead: e.lead_id.to_string(),
            id: id.to_string(),
            opened: e.timestamp,
            closed: None,
            outcome: Outcome::Open,
            amount: None,
        });
        deal.opened = deal.opened.min(e.timestamp);
        if e.properties.amount.is_some() {
            deal.amount = e.properties.amount;
        }
        let outcome = match e.properties.stage {
            Some(Stage::ClosedWon) => Outcome::Won,
            Some(Stage::ClosedLost) => Outcome::Lost,
            _ => continue,
        };
        if deal.closed.is_none_or(|c| e.timestamp < c) {
            deal.closed = Some(e.timestamp);
            deal.outcome = outcome;
        }
    }
    let mut all: Vec<Deal> = deals.into_values().collect();
    all.sort_by(|a, b| (a.opened, &a.lead, &a.id).cmp(&(b.opened, &b.lead, &b.id)));
    Ok(all)
}
