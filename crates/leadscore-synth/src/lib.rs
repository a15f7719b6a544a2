//! Synthetic, realistic marketing event streams, deterministic for a seed.
//!
//! A population of leads of which a fifth are "hot" and produce most events; a
//! kind mix dominated by page views and email engagement; pricing, blog, docs and
//! product pages; escalating downloads; hard and soft bounces; profile updates
//! that move grades; opportunities. Time advances by a configurable step per
//! event, so a stream can cover days or months (the demo compresses time so that
//! decay and inactivity show within a minute).
//!
//! [`outcomes`] turns a stream into a history whose deals close in a known
//! way, for checking a model review against truth.

pub mod outcomes;

use leadscore_core::event::{BounceType, Field, OwnedValue, Stage};
use leadscore_core::time::Millis;
use leadscore_core::{Event, Kind};

/// SplitMix64: tiny, fast, and good enough for synthetic data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p` (0 to 1).
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// What the generator produces.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    pub leads: u64,
    /// Event time of the first event.
    pub start: Millis,
    /// Event time advances by this much per event, on average.
    pub step: Millis,
    /// Share of erase events (right to erasure), 0 to 1.
    pub erase_share: f64,
    /// Every lead in turn (lead `n % leads` for the n-th event) instead of the
    /// realistic hot/cold mix: touches every lead once per `leads` events, for
    /// tests of memory over many distinct leads.
    pub sweep: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { seed: 42, leads: 100_000, start: 1_767_225_600_000, step: 10, erase_share: 0.0, sweep: false }
    }
}

const PAGES: &[&str] = &[
    "https://example.com/",
    "https://example.com/pricing",
    "https://example.com/pricing/enterprise",
    "https://example.com/blog/lead-scoring-101",
    "https://example.com/blog/analytics-for-marketers",
    "https://example.com/blog/automation-playbook",
    "https://example.com/docs/getting-started",
    "https://example.com/product/analytics",
    "https://example.com/solutions/marketing-automation",
    "https://example.com/customers",
    "https://example.com/about",
    "https://example.com/blog/webinar-recap",
];
const ASSETS: &[&str] = &[
    "analytics-buyers-guide.pdf",
    "automation-roi-calculator.xlsx",
    "security-whitepaper.pdf",
    "case-study-retail.pdf",
];
const TERMS: &[&str] = &["pricing", "analytics dashboard", "marketing automation", "sso", "api"];
const TITLES: &[&str] = &[
    "VP of Marketing",
    "Marketing Manager",
    "Head of Growth",
    "Data Analyst",
    "Student",
    "Software Engineer",
    "Chief Revenue Officer",
    "Marketing Coordinator",
    "Founder",
];
const DOMAINS: &[&str] = &["acme.io", "globex.com", "gmail.com", "initech.com", "outlook.com", "umbrella.co"];
const INDUSTRIES: &[&str] = &["Software", "Retail", "Financial Services", "Healthcare", "Education"];
const COUNTRIES: &[&str] = &["US", "DE", "GB", "FR", "BR", "IN", "NL", "JP"];

/// An endless stream of events.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    settings: Settings,
    now: Millis,
    seq: u64,
    lead_offset: u64,
}

impl Generator {
    pub fn new(settings: Settings) -> Generator {
        Generator { rng: Rng::new(settings.seed), now: settings.start, seq: 0, settings, lead_offset: 0 }
    }

    /// Shifts the population: lead `n` becomes lead `n + offset`. Moving the
    /// offset forward over time lets old leads go quiet and new ones arrive.
    pub fn set_lead_offset(&mut self, offset: u64) {
        self.lead_offset = offset;
    }

    /// Sets the event time of the next event.
    pub fn set_now(&mut self, now: Millis) {
        self.now = now;
    }

    /// The event time the next event will have (about).
    pub fn now(&self) -> Millis {
        self.now
    }

    fn lead(&mut self) -> u64 {
        let n = self.settings.leads.max(1);
        if self.settings.sweep {
            return (self.seq - 1) % n;
        }
        let hot = (n / 5).max(1);
        if self.rng.chance(0.8) {
            self.rng.below(hot)
        } else {
            self.rng.below(n)
        }
    }

    /// The lead id of lead number `n`.
    pub fn lead_id(n: u64) -> String {
        format!("L-{n:07}")
    }

    pub fn next_event(&mut self) -> Event {
        self.seq += 1;
        self.now += self.rng.below(2 * self.settings.step.max(0) as u64 + 1) as Millis;
        let lead = Self::lead_id(self.lead() + self.lead_offset);
        let id = format!("e-{:x}-{}", self.settings.seed, self.seq);
        let roll = self.rng.below(1000);
        let kind = if self.rng.chance(self.settings.erase_share) {
            Kind::Erase
        } else {
            match roll {
                0..=449 => Kind::PageView,
                450..=569 => Kind::EmailOpen,
                570..=649 => Kind::EmailClick,
                650..=729 => Kind::EmailSend,
                730..=779 => Kind::Download,
                780..=829 => Kind::Search,
                830..=859 => Kind::FormSubmit,
                860..=879 => Kind::Webinar,
                880..=909 => Kind::EmailBounce,
                910..=969 => Kind::ProfileUpdate,
                970..=984 => Kind::OpportunityUpdate,
                _ => Kind::Unsubscribe,
            }
        };
        let mut e = Event::new(id.as_str(), lead.as_str(), kind, self.now);
        let p = &mut e.properties;
        match kind {
            Kind::PageView => {
                let url = *self.rng.pick(PAGES);
                p.set_text(Field::Url, url);
                p.duration_ms = Some(self.rng.below(120_000) as i64);
            }
            Kind::EmailOpen | Kind::EmailSend => p.set_text(Field::Campaign, "nurture-q4"),
            Kind::EmailClick => {
                let url = *self.rng.pick(PAGES);
                p.set_text(Field::LinkUrl, url);
                p.set_text(Field::Campaign, "nurture-q4");
            }
            Kind::Download => {
                let asset = *self.rng.pick(ASSETS);
                p.set_text(Field::Asset, asset);
            }
            Kind::Search => {
                let term = *self.rng.pick(TERMS);
                p.set_text(Field::Term, term);
            }
            Kind::FormSubmit => p.set_text(Field::Form, "demo-request"),
            Kind::Webinar => {
                p.set_text(Field::Webinar, "monthly-product-tour");
                p.attended = Some(self.rng.chance(0.7));
            }
            Kind::EmailBounce => {
                p.bounce_type = Some(if self.rng.chance(0.2) { BounceType::Hard } else { BounceType::Soft })
            }
            Kind::ProfileUpdate => {
                let title = *self.rng.pick(TITLES);
                let domain = *self.rng.pick(DOMAINS);
                p.profile.push((Field::JobTitle, Some(OwnedValue::Text(title.into()))));
                p.profile
                    .push((Field::Email, Some(OwnedValue::Text(format!("{}@{domain}", lead.to_lowercase()).into()))));
                if self.rng.chance(0.5) {
                    let size = [20i64, 80, 400, 2500][self.rng.below(4) as usize];
                    let industry = *self.rng.pick(INDUSTRIES);
                    let country = *self.rng.pick(COUNTRIES);
                    p.profile.push((Field::CompanySize, Some(OwnedValue::Integer(size))));
                    p.profile.push((Field::Industry, Some(OwnedValue::Text(industry.into()))));
                    p.profile.push((Field::Country, Some(OwnedValue::Text(country.into()))));
                }
            }
            Kind::OpportunityUpdate => {
                p.set_text(Field::OpportunityId, format!("OPP-{lead}"));
                p.stage = Some(*self.rng.pick(&[Stage::Open, Stage::Open, Stage::ClosedWon, Stage::ClosedLost]));
            }
            Kind::Unsubscribe => p.set_text(Field::List, "newsletter"),
            Kind::Erase => {}
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed() {
        let s = Settings { leads: 10, ..Settings::default() };
        let a: Vec<Event> = (0..100).scan(Generator::new(s.clone()), |g, _| Some(g.next_event())).collect();
        let b: Vec<Event> = (0..100).scan(Generator::new(s), |g, _| Some(g.next_event())).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn time_moves_forward_and_the_mix_is_realistic() {
        let mut g = Generator::new(Settings::default());
        let evs: Vec<Event> = (0..10_000).map(|_| g.next_event()).collect();
        assert!(evs.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        let views = evs.iter().filter(|e| e.kind == Kind::PageView).count();
        assert!((4000..5000).contains(&views), "{views} page views in 10k events");
    }

    #[test]
    fn a_sweep_touches_every_lead_in_turn() {
        let mut g = Generator::new(Settings { leads: 3, sweep: true, ..Settings::default() });
        let leads: Vec<String> = (0..6).map(|_| g.next_event().lead_id.as_str().to_string()).collect();
        assert_eq!(leads, ["L-0000000", "L-0000001", "L-0000002", "L-0000000", "L-0000001", "L-0000002"]);
    }
}
