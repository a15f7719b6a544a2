//! A history whose deals close in a known way, to check a model review
//! against truth (`leadscore gen --outcomes`).
//!
//! Each lead gets one fixed profile at its first event: a job title, a
//! company size and a country drawn for the lead (the generator's own profile
//! and opportunity updates are dropped). Each lead with at least
//! [`MIN_EVENTS`] events opens one opportunity at one of its events in the
//! second half of its activity, and wins it with probability
//!
//! ```text
//! p = 1 / (1 + exp(-(-3.5 + 0.8 * min(intent, 8) + 1.0 * fit)))
//! ```
//!
//! where `intent` counts the lead's pricing-page views, demo-request forms,
//! downloads and webinars in the 30 days before the opportunity opened, and
//! `fit` is 1 for an executive title plus 1 for a company of 400 people or
//! more. The country plays no part: a model that scores only the country
//! scores noise. Won deals close 7 to 37 days after opening, lost ones 14 to
//! 74; amounts grow with company size.

use crate::{Rng, TITLES};
use leadscore_core::event::{Field, OwnedValue, Stage, Value};
use leadscore_core::{Event, Kind, Millis};
use std::collections::BTreeMap;

/// Leads with fewer events open no opportunity.
pub const MIN_EVENTS: usize = 6;
const DAY: Millis = 86_400_000;
const EXEC: &[&str] = &["VP of Marketing", "Head of Growth", "Chief Revenue Officer", "Founder"];
const SIZES: &[i64] = &[20, 80, 400, 2500];
const COUNTRIES: &[&str] = &["US", "DE", "GB", "FR", "BR", "IN"];

/// What the generator decided for one opportunity.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub lead: String,
    pub opened: Millis,
    pub intent: u32,
    pub fit: u32,
    /// The chance it was won.
    pub p: f64,
    pub won: bool,
}

/// The chance to win from intent and fit (see the module docs).
pub fn chance(intent: u32, fit: u32) -> f64 {
    let x = -3.5 + 0.8 * f64::from(intent.min(8)) + 1.0 * f64::from(fit);
    1.0 / (1.0 + (-x).exp())
}

fn intends(e: &Event) -> bool {
    match e.kind {
        Kind::PageView => matches!(e.properties.get(Field::Url), Some(Value::Text(u)) if u.contains("/pricing")),
        Kind::FormSubmit | Kind::Download | Kind::Webinar => true,
        _ => false,
    }
}

/// `events` (in time order) with one profile per lead and known-truth
/// opportunities, in time order; and what was decided for each opportunity.
pub fn with_outcomes(events: Vec<Event>, seed: u64) -> (Vec<Event>, Vec<Truth>) {
    let mut rng = Rng::new(seed ^ 0x5eed_0c0e);
    let events: Vec<Event> = events
        .into_iter()
        .filter(|e| !matches!(e.kind, Kind::ProfileUpdate | Kind::OpportunityUpdate | Kind::Erase))
        .collect();
    let mut by_lead: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        by_lead.entry(e.lead_id.to_string()).or_default().push(i);
    }
    let mut added = Vec::new();
    let mut truths = Vec::new();
    for (lead, idx) in &by_lead {
        let first = events[idx[0]].timestamp;
        let exec = rng.chance(0.4);
        let title = if exec { *rng.pick(EXEC) } else { *rng.pick(TITLES) };
        let exec = EXEC.contains(&title);
        let size = *rng.pick(SIZES);
        let country = *rng.pick(COUNTRIES);
        let mut profile = Event::new(format!("p-{lead}").as_str(), lead.as_str(), Kind::ProfileUpdate, first);
        profile.properties.profile = vec![
            (Field::JobTitle, Some(OwnedValue::Text(title.into()))),
            (Field::CompanySize, Some(OwnedValue::Integer(size))),
            (Field::Country, Some(OwnedValue::Text(country.into()))),
        ];
        added.push(profile);
        if idx.len() < MIN_EVENTS {
            continue;
        }
        let half = idx.len() / 2;
        let at = idx[half + rng.below((idx.len() - half) as u64) as usize];
        let opened = events[at].timestamp;
        let intent = idx
            .iter()
            .map(|&i| &events[i])
            .filter(|e| e.timestamp < opened && e.timestamp > opened - 30 * DAY && intends(e))
            .count() as u32;
        let fit = u32::from(exec) + u32::from(size >= 400);
        let p = chance(intent, fit);
        let won = rng.chance(p);
        let days = if won { 7 + rng.below(31) } else { 14 + rng.below(61) } as Millis;
        let amount = (10_000.0 * (1.0 + (size as f64).log10()) * (0.5 + rng.below(1001) as f64 / 1000.0)).round();
        let id = format!("OPP-{lead}-1");
        let mut open = Event::new(format!("o-{lead}-open").as_str(), lead.as_str(), Kind::OpportunityUpdate, opened);
        open.properties.set_text(Field::OpportunityId, id.clone());
        open.properties.stage = Some(Stage::Open);
        open.properties.amount = Some(amount);
        let mut close =
            Event::new(format!("o-{lead}-close").as_str(), lead.as_str(), Kind::OpportunityUpdate, opened + days * DAY);
        close.properties.set_text(Field::OpportunityId, id);
        close.properties.stage = Some(if won { Stage::ClosedWon } else { Stage::ClosedLost });
        close.properties.amount = Some(amount);
        added.push(open);
        added.push(close);
        truths.push(Truth { lead: lead.clone(), opened, intent, fit, p, won });
    }
    let mut all = events;
    all.extend(added);
    // Stable: at one instant, the lead's profile comes before what follows it.
    all.sort_by_key(|e| e.timestamp);
    (all, truths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Generator, Settings};

    #[test]
    fn outcomes_follow_the_stated_chance() {
        let mut g = Generator::new(Settings { leads: 2000, step: 60_000, ..Settings::default() });
        let events: Vec<Event> = (0..150_000).map(|_| g.next_event()).collect();
        let (all, truths) = with_outcomes(events, 7);
        assert!(all.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert!(truths.len() > 500, "{} opportunities", truths.len());
        let expected: f64 = truths.iter().map(|t| t.p).sum();
        let won = truths.iter().filter(|t| t.won).count() as f64;
        let sd = truths.iter().map(|t| t.p * (1.0 - t.p)).sum::<f64>().sqrt();
        assert!((won - expected).abs() < 4.0 * sd, "{won} won, {expected:.0} expected");
        // Both behaviour and fit vary across leads.
        assert!(truths.iter().any(|t| t.intent == 0) && truths.iter().any(|t| t.intent >= 5));
        assert!(truths.iter().any(|t| t.fit == 0) && truths.iter().any(|t| t.fit == 2));
        let opps = all.iter().filter(|e| e.kind == Kind::OpportunityUpdate).count();
        assert_eq!(opps, 2 * truths.len());
    }
}
