//! Exponential decay of the behavioural score, evaluated lazily, and the exact
//! instant at which a decaying score crosses a threshold.
//!
//! A score is stored as `(value, anchor)`; its value at `t` is
//! `value * 2^(-(t - anchor) / half_life)`. Segments compare the score rounded to
//! cents (what the outputs show), so crossings are computed for that rounded
//! value: the closed form gives the instant to within a millisecond or two, and a
//! short search against [`cents_at`] itself makes the answer agree with the
//! function the engine evaluates, to the millisecond.

use crate::time::{Millis, MAX_MILLIS};

/// The score at `now`, decayed from `value` held since `anchor`.
#[inline]
pub fn decayed(value: f64, anchor: Millis, now: Millis, half_life: Millis) -> f64 {
    if half_life <= 0 || now <= anchor || value == 0.0 {
        return value;
    }
    value * (-((now - anchor) as f64) / half_life as f64).exp2()
}

/// A score in cents, rounded half away from zero, as outputs show it.
///
/// Written with a truncating cast rather than `f64::round`, which is a libm call
/// on the baseline x86-64 target and showed up in profiles.
#[inline]
pub fn cents(score: f64) -> i64 {
    let c = score * 100.0;
    let r = (c.abs() + 0.5) as i64;
    if c < 0.0 {
        -r
    } else {
        r
    }
}

/// A score rounded to two decimals.
#[inline]
pub fn round2(score: f64) -> f64 {
    let c = cents(score);
    if c == 0 {
        0.0
    } else {
        c as f64 / 100.0
    }
}

/// The score in cents at `now`.
#[inline]
pub fn cents_at(value: f64, anchor: Millis, now: Millis, half_life: Millis) -> i64 {
    cents(decayed(value, anchor, now, half_life))
}

/// The first instant after `now` at which "the score in cents is at least
/// `threshold`" changes its truth value through decay alone, or `None` if it never
/// does. Decay is monotone (towards zero from either side), so the test flips at
/// most once.
pub fn crossing(value: f64, anchor: Millis, now: Millis, half_life: Millis, threshold: i64) -> Option<Millis> {
    // Nothing is after the last instant (and `now + 1` below must not pass it).
    if half_life <= 0 || value == 0.0 || now >= MAX_MILLIS {
        return None;
    }
    let holds = |t: Millis| cents_at(value, anchor, t, half_life) >= threshold;
    let current = holds(now);
    // In the limit the score is 0 cents; a test already agreeing with the limit
    // never changes.
    if current == (0 >= threshold) {
        return None;
    }
    // Rounding puts the boundary half a cent below the threshold.
    let boundary = (threshold as f64 - 0.5) / 100.0;
    let ratio = value / boundary;
    let estimate = if ratio > 0.0 { anchor as f64 + half_life as f64 * ratio.log2() } else { now as f64 };
    // now < MAX_MILLIS, so the bounds of `clamp` are in order; `as` saturates.
    let mut hi = if estimate.is_finite() { (estimate.ceil() as i64).clamp(now + 1, MAX_MILLIS) } else { now + 1 };
    // Find some instant where the test has flipped...
    let mut step = 1i64;
    while holds(hi) == current {
        if hi >= MAX_MILLIS {
            return None;
        }
        hi = hi.saturating_add(step).min(MAX_MILLIS);
        step = step.saturating_mul(2);
    }
    // ...and some instant before it where it has not.
    let mut lo = hi - 1;
    step = 1;
    while lo > now && holds(lo) != current {
        hi = lo;
        lo = lo.saturating_sub(step).max(now);
        step = step.saturating_mul(2);
    }
    // Invariant: holds(lo) == current, holds(hi) != current.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if holds(mid) == current {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::DAY;
    use proptest::prelude::*;

    const H: Millis = 30 * DAY;

    #[test]
    fn half_life_halves() {
        assert_eq!(decayed(80.0, 0, H, H), 40.0);
        assert_eq!(decayed(80.0, 0, 2 * H, H), 20.0);
        assert_eq!(decayed(80.0, 10, 5, H), 80.0, "time never runs backwards");
        assert_eq!(decayed(80.0, 0, H, 0), 80.0, "a zero half-life disables decay");
    }

    #[test]
    fn cents_round_half_away_from_zero() {
        assert_eq!(cents(0.125), 13);
        assert_eq!(cents(-0.125), -13);
        assert_eq!(cents(57.254), 5725);
        assert_eq!(cents(-57.256), -5726);
        assert_eq!(cents(0.0), 0);
        assert_eq!(cents(100.0), 10_000);
    }

    #[test]
    fn rounding() {
        assert_eq!(round2(57.254), 57.25);
        assert_eq!(round2(57.255_000_1), 57.26);
        assert_eq!(round2(0.001), 0.0);
        assert_eq!(round2(0.1 + 0.2), 0.3);
    }

    #[test]
    fn crossing_80_below_76() {
        let t = crossing(80.0, 0, 0, H, 7600).unwrap();
        assert!(cents_at(80.0, 0, t - 1, H) >= 7600);
        assert!(cents_at(80.0, 0, t, H) < 7600);
        // 80 * 2^(-t/H) = 75.995 → t = H * log2(80 / 75.995)
        let exact = H as f64 * (80.0f64 / 75.995).log2();
        assert!((t as f64 - exact).abs() <= 2.0, "{t} vs {exact}");
    }

    #[test]
    fn no_crossing_when_the_test_agrees_with_the_limit() {
        assert_eq!(crossing(50.0, 0, 0, H, 7600), None, "already below");
        assert_eq!(crossing(50.0, 0, 0, H, 0), None, "a positive score is never below 0");
        assert_eq!(crossing(0.0, 0, 0, H, 100), None);
        assert_eq!(crossing(50.0, 0, 0, 0, 100), None, "no decay");
    }

    #[test]
    fn negative_scores_rise_towards_zero() {
        let t = crossing(-40.0, 0, 0, H, -1999).unwrap();
        assert!(cents_at(-40.0, 0, t - 1, H) < -1999);
        assert!(cents_at(-40.0, 0, t, H) >= -1999);
    }

    proptest! {
        #[test]
        fn decay_composes(v in -100.0f64..100.0, a in 0i64..400 * DAY, b in 0i64..400 * DAY) {
            let once = decayed(v, 0, a + b, H);
            let twice = decayed(decayed(v, 0, a, H), a, a + b, H);
            prop_assert!((once - twice).abs() <= 1e-9 * v.abs().max(1.0), "{once} vs {twice}");
        }

        #[test]
        fn crossing_is_exact_to_the_millisecond(
            v in 0.01f64..100.0, anchor in 0i64..DAY, elapsed in 0i64..100 * DAY, thr in 1i64..10_000,
        ) {
            let now = anchor + elapsed;
            let before = cents_at(v, anchor, now, H) >= thr;
            match crossing(v, anchor, now, H, thr) {
                Some(t) => {
                    prop_assert!(t > now);
                    prop_assert_eq!(cents_at(v, anchor, t - 1, H) >= thr, before, "nothing changes just before");
                    prop_assert_ne!(cents_at(v, anchor, t, H) >= thr, before, "it changes at the deadline");
                }
                None => {
                    let far = now + 10_000 * DAY;
                    prop_assert_eq!(cents_at(v, anchor, far, H) >= thr, before);
                }
            }
        }
    }
}
