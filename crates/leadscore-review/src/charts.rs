//! The review as a self-contained HTML page: its tables and four charts
//! drawn as inline SVG with plotters (conversion by score decile, the ROC
//! curve, the score tier × grade heat map, days from open to close of won
//! deals). No scripts, no external files: it can be mailed or attached to
//! the sales meeting's invitation.

use crate::review::Report;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write as _;

type Chart = Result<String, String>;

const SIZE: (u32, u32) = (560, 340);
const BAR: RGBColor = RGBColor(46, 110, 180);

fn draw(f: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>) -> Chart {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        f(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Conversion rate of each score decile of closed deals.
pub fn deciles(r: &Report) -> Chart {
    let labels: Vec<String> = r.deciles.iter().map(|b| format!("{:.0}-{:.0}", b.from, b.to)).collect();
    draw(|root| {
        let n = r.deciles.len().max(1);
        let mut chart = ChartBuilder::on(root)
            .caption("Conversion by score decile at open", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..1f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .x_desc("score at open (deciles of closed deals)")
            .y_desc("won / closed")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(r.deciles.iter().enumerate().map(|(i, b)| {
                let rate = if b.deals > 0 { b.won as f64 / b.deals as f64 } else { 0.0 };
                let mut bar =
                    Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), rate)], BAR.filled());
                bar.set_margin(0, 0, 4, 4);
                bar
            }))
            .map_err(err)?;
        if let Some(base) = r.base_rate {
            chart
                .draw_series(LineSeries::new(
                    vec![(SegmentValue::Exact(0), base), (SegmentValue::Exact(n), base)],
                    RED.stroke_width(1),
                ))
                .map_err(err)?
                .label("base rate")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    })
}

/// The ROC curve of the score at open, with chance as the diagonal.
pub fn roc(r: &Report) -> Chart {
    draw(|root| {
        let caption = format!("ROC curve (AUC {})", r.auc.map_or("-".into(), |a| format!("{a:.3}")));
        let mut chart = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("lost deals above the threshold")
            .y_desc("won deals above it")
            .draw()
            .map_err(err)?;
        chart.draw_series(LineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3))).map_err(err)?;
        chart.draw_series(LineSeries::new(r.roc.iter().copied(), BAR.stroke_width(2))).map_err(err)?;
        Ok(())
    })
}

/// Conversion in each score tier × grade cell, darker for higher (grades
/// and tiers without closed deals left out).
pub fn heat_map(r: &Report) -> Chart {
    let tiers: Vec<&str> = r.tiers.iter().filter(|g| g.deals > 0).map(|g| g.name.as_str()).collect();
    let grades: Vec<&str> = r.grades.iter().filter(|g| g.deals > 0).map(|g| g.name.as_str()).collect();
    let name = |names: &[&str], v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => names.get(*i).map(|s| s.to_string()).unwrap_or_default(),
        _ => String::new(),
    };
    draw(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Conversion by score tier and grade", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(110)
            .build_cartesian_2d(
                (0..grades.len().max(1) - 1).into_segmented(),
                (0..tiers.len().max(1) - 1).into_segmented(),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(grades.len().max(1))
            .y_labels(tiers.len().max(1))
            .x_label_formatter(&|x| name(&grades, x))
            .y_label_formatter(&|y| name(&tiers, y))
            .x_desc("grade at open")
            .draw()
            .map_err(err)?;
        for c in &r.matrix {
            let (Some(x), Some(y)) =
                (grades.iter().position(|g| *g == c.grade), tiers.iter().position(|t| *t == c.tier))
            else {
                continue;
            };
            let shade = match c.rate {
                Some(rate) => BAR.mix(0.15 + 0.85 * rate),
                None => WHITE.mix(1.0),
            };
            let cell = [
                (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
            ];
            chart.draw_series(std::iter::once(Rectangle::new(cell, shade.filled()))).map_err(err)?;
            let label = c.rate.map_or(String::new(), |rate| format!("{:.0}% of {}", rate * 100.0, c.deals));
            let color = if c.rate.unwrap_or(0.0) > 0.5 { WHITE } else { BLACK };
            chart
                .draw_series(std::iter::once(Text::new(
                    label,
                    (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                    ("sans-serif", 12).into_font().color(&color).pos(Pos::new(HPos::Center, VPos::Center)),
                )))
                .map_err(err)?;
        }
        Ok(())
    })
}

/// Days from open to close of won deals, in weekly bins.
pub fn time_to_close(r: &Report) -> Chart {
    let max = r.days_to_close_won.iter().copied().fold(0.0f64, f64::max);
    let bins = ((max / 7.0).floor() as usize + 1).clamp(1, 52);
    let mut counts = vec![0usize; bins];
    for d in &r.days_to_close_won {
        counts[((d / 7.0).floor() as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    draw(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Days from open to close (won deals)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..(bins * 7) as f64, 0f64..top * 1.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("days")
            .y_desc("deals")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, n)| {
                let x = (i * 7) as f64;
                Rectangle::new([(x + 0.5, 0.0), (x + 6.5, *n as f64)], BAR.filled())
            }))
            .map_err(err)?;
        Ok(())
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0}%", v * 100.0))
}

/// The whole report as one HTML page.
pub fn html(r: &Report) -> Result<String, String> {
    let mut o = String::new();
    let title = format!("leadscore review of model {}", esc(&r.model_version));
    let _ = write!(
        o,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font-family:sans-serif;margin:2em;color:#222;max-width:1200px}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}.charts{{display:flex;flex-wrap:wrap;gap:12px}}\
         .kpi{{font-size:1.1em}}</style></head><body><h1>{title}</h1>"
    );
    let _ = write!(
        o,
        "<p class=\"kpi\">{} events scored, as of {}{}. {} deals: <b>{} won</b>, {} lost, {} still open; base rate \
         <b>{}</b>. ROC AUC of the score at open <b>{}</b> ({} days before: {}). Median days to close: {} from \
         open, {} from entering sales-ready.</p>",
        r.events,
        esc(&r.as_of),
        r.since.as_ref().map_or(String::new(), |s| format!(", deals opened since {}", esc(s))),
        r.deals,
        r.won,
        r.lost,
        r.still_open,
        pct(r.base_rate),
        r.auc.map_or("-".into(), |a| format!("{a:.3}")),
        r.days_before,
        r.auc_before.map_or("-".into(), |a| format!("{a:.3}")),
        r.median_days_open_to_close.map_or("-".into(), |d| format!("{d:.1}")),
        r.median_days_ready_to_close.map_or("-".into(), |d| format!("{d:.1}")),
    );
    o.push_str("<h2>Suggestions</h2><ul>");
    for s in &r.suggestions {
        let _ = write!(o, "<li>{}</li>", esc(s));
    }
    o.push_str("</ul><div class=\"charts\">");
    for chart in [deciles(r)?, roc(r)?, heat_map(r)?, time_to_close(r)?] {
        o.push_str(&chart);
    }
    o.push_str("</div>");
    for (title, groups) in [("By score tier at open", &r.tiers), ("By grade at open", &r.grades)] {
        let _ = write!(
            o,
            "<h2>{title}</h2><table><tr><th></th><th>closed deals</th><th>won</th><th>conversion</th><th>lift</th>\
             <th>won value</th><th>median days to close</th></tr>"
        );
        for g in groups {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td></tr>",
                esc(&g.name),
                g.deals,
                g.won,
                pct(g.rate),
                g.lift.map_or("-".into(), |l| format!("{l:.2}")),
                g.won_value,
                g.median_days_to_close.map_or("-".into(), |d| format!("{d:.1}"))
            );
        }
        o.push_str("</table>");
    }
    o.push_str(
        "<h2>Points each rule had awarded before the deal opened (mean per deal)</h2><table><tr><th>rule</th>\
         <th>won</th><th>lost</th><th>separates</th></tr>",
    );
    for x in &r.rules {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
            esc(&x.rule),
            x.won_mean_points,
            x.lost_mean_points,
            if x.separates { "yes" } else { "no" }
        );
    }
    o.push_str("</table><p>Generated by leadscore review. The JSON of this report has every deal.</p></body></html>\n");
    Ok(o)
}
