//! The statistics of a review, on `(score, won)` pairs: ROC AUC (the chance
//! that a won deal outscored a lost one, ties counting half), the ROC curve,
//! medians, conversion by score decile, and the lowest threshold that meets
//! a precision.

/// ROC AUC of `scored` (`None` without both won and lost deals), by the
/// Mann–Whitney rank sum with tied scores sharing their mean rank.
pub fn auc(scored: &[(f64, bool)]) -> Option<f64> {
    let won = scored.iter().filter(|s| s.1).count();
    let lost = scored.len() - won;
    if won == 0 || lost == 0 {
        return None;
    }
    let mut sorted: Vec<(f64, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their mean.
        let mean = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean * sorted[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    let u = rank_sum - (won * (won + 1)) as f64 / 2.0;
    Some(u / (won as f64 * lost as f64))
}

/// The ROC curve: `(false positive rate, true positive rate)` from (0, 0) to
/// (1, 1), one point per distinct score, highest threshold first.
pub fn roc(scored: &[(f64, bool)]) -> Vec<(f64, f64)> {
    let won = scored.iter().filter(|s| s.1).count().max(1) as f64;
    let lost = scored.iter().filter(|s| !s.1).count().max(1) as f64;
    let mut sorted: Vec<(f64, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            if sorted[j].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            j += 1;
        }
        points.push((fp / lost, tp / won));
        i = j;
    }
    points
}

/// The median (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// A score range and the deals in it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Bucket {
    pub from: f64,
    pub to: f64,
    pub deals: usize,
    pub won: usize,
}

/// `scored` cut into (up to) ten groups of equal size by score; deals with
/// the same score stay together.
pub fn deciles(scored: &[(f64, bool)]) -> Vec<Bucket> {
    let mut sorted: Vec<(f64, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = sorted.len();
    let mut out: Vec<Bucket> = Vec::new();
    let mut i = 0;
    for d in 1..=10 {
        let mut end = (n * d / 10).max(i);
        while end < n && end > 0 && sorted[end].0 == sorted[end - 1].0 {
            end += 1;
        }
        if end == i {
            continue;
        }
        let part = &sorted[i..end];
        out.push(Bucket {
            from: part[0].0,
            to: part[part.len() - 1].0,
            deals: part.len(),
            won: part.iter().filter(|s| s.1).count(),
        });
        i = end;
    }
    out
}

/// A threshold and how deals at or above it did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cut {
    pub threshold: f64,
    pub precision: f64,
    /// The share of all won deals at or above it.
    pub recall: f64,
    pub deals: usize,
}

/// How deals scoring at least `threshold` did (`None` if none did).
pub fn cut_at(scored: &[(f64, bool)], threshold: f64) -> Option<Cut> {
    let above: Vec<&(f64, bool)> = scored.iter().filter(|s| s.0 >= threshold).collect();
    if above.is_empty() {
        return None;
    }
    let won_above = above.iter().filter(|s| s.1).count();
    let won = scored.iter().filter(|s| s.1).count().max(1);
    Some(Cut {
        threshold,
        precision: won_above as f64 / above.len() as f64,
        recall: won_above as f64 / won as f64,
        deals: above.len(),
    })
}

/// The lowest whole-point score threshold at which at least `min_deals`
/// deals score at or above it and a share of at least `precision` of them
/// were won: the sales-ready threshold that meets a target precision with
/// the most won deals.
pub fn threshold_for(scored: &[(f64, bool)], precision: f64, min_deals: usize) -> Option<Cut> {
    let mut thresholds: Vec<f64> = scored.iter().map(|s| s.0.floor()).collect();
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    thresholds.into_iter().filter_map(|t| cut_at(scored, t)).find(|c| c.deals >= min_deals && c.precision >= precision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_is_the_share_of_won_lost_pairs_ordered_right() {
        assert_eq!(auc(&[(1.0, false), (2.0, true)]), Some(1.0));
        assert_eq!(auc(&[(1.0, true), (2.0, false)]), Some(0.0));
        assert_eq!(auc(&[(1.0, true), (1.0, false)]), Some(0.5));
        // Pairs: (3 vs 1) (3 vs 2) right, (0 vs 1) (0 vs 2) wrong.
        assert_eq!(auc(&[(3.0, true), (0.0, true), (1.0, false), (2.0, false)]), Some(0.5));
        assert_eq!(auc(&[(1.0, true)]), None);
    }

    proptest::proptest! {
        #[test]
        fn auc_equals_counting_pairs(v in proptest::collection::vec((0u8..6, proptest::bool::ANY), 2..40)) {
            let scored: Vec<(f64, bool)> = v.iter().map(|(s, w)| (f64::from(*s), *w)).collect();
            let (mut good, mut pairs) = (0.0, 0.0);
            for a in scored.iter().filter(|s| s.1) {
                for b in scored.iter().filter(|s| !s.1) {
                    pairs += 1.0;
                    good += if a.0 > b.0 { 1.0 } else if a.0 == b.0 { 0.5 } else { 0.0 };
                }
            }
            let expected = (pairs > 0.0).then(|| good / pairs);
            let got = auc(&scored);
            let agree = match (got, expected) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-12,
                (a, b) => a == b,
            };
            proptest::prop_assert!(agree, "{:?} vs {:?}", got, expected);
            // The area under the ROC curve is the AUC.
            if let Some(a) = got {
                let curve = roc(&scored);
                let area: f64 = curve.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum();
                proptest::prop_assert!((area - a).abs() < 1e-9, "{area} vs {a}");
            }
            let buckets = deciles(&scored);
            proptest::prop_assert_eq!(buckets.iter().map(|b| b.deals).sum::<usize>(), scored.len());
        }
    }

    #[test]
    fn the_threshold_is_the_lowest_that_meets_the_precision() {
        let scored = [(10.0, false), (20.0, false), (29.5, true), (40.0, false), (50.0, true), (60.0, true)];
        let c = threshold_for(&scored, 0.75, 2).expect("a threshold");
        assert_eq!((c.threshold, c.deals), (29.0, 4), "a whole point, at or below the deal's 29.5");
        let c = threshold_for(&scored, 0.6, 2).expect("a threshold");
        assert_eq!((c.threshold, c.deals), (20.0, 5));
        assert_eq!(threshold_for(&scored, 1.0, 2).map(|c| c.threshold), Some(50.0));
        assert_eq!(threshold_for(&scored, 1.0, 3), None);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), Some(2.5));
    }
}
