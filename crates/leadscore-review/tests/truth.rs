//! The review against known truth: a history generated so that deals close
//! with a stated chance that grows with recent buying intent and fit
//! (`leadscore_synth::outcomes`). The seed model scores intent and grades fit,
//! so its score must rank won deals clearly above lost ones; a model that
//! scores only the lead's country, which plays no part in the truth, must
//! rank them no better than chance. The suggested sales-ready threshold must
//! rise with the precision asked for and meet it.

use leadscore_codec::encode_event_json;
use leadscore_core::Event;
use leadscore_review::review::{analyse, Options};
use leadscore_review::{deals, history, Input};
use leadscore_synth::outcomes::with_outcomes;
use leadscore_synth::{Generator, Settings};

fn history_of(seed: u64) -> Input {
    let mut g = Generator::new(Settings { seed, leads: 1200, step: 8 * 60_000, ..Settings::default() });
    let events: Vec<Event> = (0..90_000).map(|_| g.next_event()).collect();
    let (all, truths) = with_outcomes(events, seed);
    assert!(truths.len() > 300, "{} deals", truths.len());
    // The truth itself: ranking deals by their chance gives this AUC.
    let oracle: Vec<(f64, bool)> = truths.iter().map(|t| (t.p, t.won)).collect();
    let oracle = leadscore_review::stats::auc(&oracle).expect("both outcomes");
    eprintln!("AUC of the truth's own chances: {oracle:.3}");
    let mut bytes = Vec::new();
    for e in &all {
        encode_event_json(&mut bytes, e);
        bytes.push(b'\n');
    }
    Input::Bytes(bytes)
}

const NOISE: &str = r#"
version = "noise-1"
description = "Scores only the country, which the truth ignores."
[score]
min = 0
max = 100
half_life = "36500d"
[grade]
start = 50
letters = { A = 80, B = 60, C = 40, D = 20 }
lowest = "F"
[[rules]]
name = "country-us"
on = "profile_update"
when = [{ field = "country", one_of = ["US"] }]
points = 50
"#;

#[test]
fn the_review_finds_the_truth_an_informative_model_carries_and_a_noisy_one_does_not() {
    let input = history_of(11);
    let all_deals = deals::read(&input).expect("deals");
    let seed = leadscore_config::seed_model();
    let noise = leadscore_config::parse_model(NOISE).expect("the noise model");
    let mut sink = Vec::new();
    let scored = history::score(&seed, &input, None, true, &mut sink).expect("scored");
    let r = analyse(&scored, &all_deals, &Options::default());
    assert!(r.won > 50 && r.lost > 50, "{} won, {} lost", r.won, r.lost);
    let auc = r.auc.expect("an AUC");
    eprintln!("AUC of the seed model's score: {auc:.3}");
    assert!(auc > 0.65, "the seed model's score ranks won deals above lost ones: AUC {auc}");
    // Intent and fit both matter: the best tier and grades convert better.
    let rate = |g: &[leadscore_review::review::Group], name: &str| {
        g.iter().find(|x| x.name == name).and_then(|x| x.rate).unwrap_or_else(|| panic!("{name} has deals"))
    };
    assert!(rate(&r.tiers, "score-high") > rate(&r.tiers, "score-low"), "{:?}", r.tiers);
    assert!(r.tiers.iter().find(|t| t.name == "score-high").and_then(|t| t.lift).expect("lift") > 1.0);

    let noisy = history::score(&noise, &input, None, true, &mut sink).expect("scored");
    let n = analyse(&noisy, &all_deals, &Options::default());
    let noise_auc = n.auc.expect("an AUC");
    eprintln!("AUC of the noise model's score: {noise_auc:.3}");
    assert!((noise_auc - 0.5).abs() < 0.07, "a model that scores noise is near chance: AUC {noise_auc}");
    assert!(n.suggestions.iter().any(|s| s.contains("barely ranks")), "{:?}", n.suggestions);

    // Asking for more precision moves the suggested threshold up, and the
    // suggestion meets what was asked.
    let base = r.base_rate.expect("a base rate");
    let ask = |p: f64| {
        let o = Options { target_precision: p, min_deals: 15, ..Options::default() };
        analyse(&scored, &all_deals, &o).threshold.suggested
    };
    let low = ask(base + 0.05).expect("a threshold for a little above the base rate");
    let high = ask(base + 0.25).expect("a threshold for much more");
    assert!(high.threshold > low.threshold, "{low:?} then {high:?}");
    assert!(low.precision >= base + 0.05 && high.precision >= base + 0.25);
}

#[test]
fn the_html_report_is_self_contained_and_draws_every_chart() {
    let input = history_of(5);
    let seed = leadscore_config::seed_model();
    let mut sink = Vec::new();
    let scored = history::score(&seed, &input, None, true, &mut sink).expect("scored");
    let r = analyse(&scored, &deals::read(&input).expect("deals"), &Options::default());
    let html = leadscore_review::charts::html(&r).expect("html");
    assert_eq!(html.matches("<svg").count(), 4, "four charts");
    for title in ["Conversion by score decile", "ROC curve", "score tier and grade", "Days from open to close"] {
        assert!(html.contains(title), "{title}");
    }
    assert!(!html.contains("<script") && !html.contains("src=\"http"), "nothing to fetch");
    // The JSON has every deal.
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["opportunities"].as_array().expect("deals").len(), r.deals);
}
