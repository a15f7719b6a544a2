//! The review as tables for a terminal.

use super::{pct, Report};

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// The report as tables for a terminal.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Review of model {} over {} events (as of {}{}): {} deals, {} won, {} lost, {} still open; base rate {}",
        r.model_version,
        r.events,
        r.as_of,
        r.since.as_ref().map_or(String::new(), |s| format!(", deals opened since {s}")),
        r.deals,
        r.won,
        r.lost,
        r.still_open,
        r.base_rate.map_or("-".into(), pct)
    );
    let _ = writeln!(
        o,
        "ROC AUC of the score at open: {}; {} days before: {}",
        opt(r.auc, 3),
        r.days_before,
        opt(r.auc_before, 3)
    );
    let _ = writeln!(
        o,
        "median days to close: from open {}, from entering sales-ready {}\n",
        opt(r.median_days_open_to_close, 1),
        opt(r.median_days_ready_to_close, 1)
    );
    for (title, groups) in [("score tier", &r.tiers), ("grade", &r.grades)] {
        let _ = writeln!(
            o,
            "{title:<16} {:>6} {:>6} {:>7} {:>6} {:>12} {:>10}",
            "deals", "won", "rate", "lift", "won value", "days"
        );
        for g in groups.iter().filter(|g| g.deals > 0) {
            let _ = writeln!(
                o,
                "{:<16} {:>6} {:>6} {:>7} {:>6} {:>12.2} {:>10}",
                g.name,
                g.deals,
                g.won,
                g.rate.map_or("-".into(), pct),
                opt(g.lift, 2),
                g.won_value,
                opt(g.median_days_to_close, 1)
            );
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "{:<28} {:>10} {:>10}", "rule (mean points)", "won", "lost");
    for x in r.rules.iter().filter(|x| x.won_mean_points != 0.0 || x.lost_mean_points != 0.0) {
        let mark = if x.separates { "" } else { "  <- does not separate" };
        let _ = writeln!(o, "{:<28} {:>10.2} {:>10.2}{mark}", x.rule, x.won_mean_points, x.lost_mean_points);
    }
    let _ = writeln!(o, "\nSuggestions:");
    for s in &r.suggestions {
        let _ = writeln!(o, "- {s}");
    }
    o
}
