//! Time as plain data: epoch milliseconds, RFC 3339 parsing and formatting, and
//! human-readable durations (`"30d"`, `"24h"`).
//!
//! The core never reads a clock; every instant is an argument. Parsing lives here
//! (not in the codec) because the model format and the codec both need it and it
//! is pure.

use std::fmt;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

pub const SECOND: Millis = 1_000;
pub const MINUTE: Millis = 60 * SECOND;
pub const HOUR: Millis = 60 * MINUTE;
pub const DAY: Millis = 24 * HOUR;

/// Earliest and latest instants accepted: years 0000 to 9999, the range RFC 3339
/// can express.
pub const MIN_MILLIS: Millis = -62_167_219_200_000;
pub const MAX_MILLIS: Millis = 253_402_300_799_999;

/// The longest duration a model may use (100 years). With instants bounded by
/// [`MIN_MILLIS`] and [`MAX_MILLIS`] (|t| < 2^48) and durations by this
/// (< 2^42), the core's sums and differences of a few of them stay far inside
/// `i64`: that is the proof that its time arithmetic cannot overflow.
pub const MAX_DURATION: Millis = 36_525 * DAY;

/// `t` brought into the range the core computes in. Decoders only produce
/// instants in range; this keeps the core total for any caller.
#[inline]
pub fn bounded(t: Millis) -> Millis {
    // Constant bounds, MIN_MILLIS < MAX_MILLIS: `clamp` cannot panic.
    t.clamp(MIN_MILLIS, MAX_MILLIS)
}

/// Why a timestamp or a duration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError(pub String);

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimeError {}

fn err(input: &str, why: &str) -> TimeError {
    TimeError(format!("{} is not an RFC 3339 timestamp: {why}", crate::text::excerpt(input)))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    let mut v = 0i64;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Parses an RFC 3339 timestamp (`2026-11-25T16:00:00.000Z`, any number of
/// fractional digits, `Z` or a numeric offset) into epoch milliseconds.
/// Fractions finer than a millisecond are truncated.
pub fn parse_rfc3339(s: &str) -> Result<Millis, TimeError> {
    let b = s.as_bytes();
    let bad = |why| err(s, why);
    let year = digits(b, 0, 4).ok_or_else(|| bad("expected a 4-digit year"))?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return Err(bad("expected YYYY-MM-DD"));
    }
    let month = digits(b, 5, 2).ok_or_else(|| bad("expected a 2-digit month"))?;
    let day = digits(b, 8, 2).ok_or_else(|| bad("expected a 2-digit day"))?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return Err(bad("expected 'T' between date and time"));
    }
    let hour = digits(b, 11, 2).ok_or_else(|| bad("expected a 2-digit hour"))?;
    let minute = digits(b, 14, 2).ok_or_else(|| bad("expected 2-digit minutes"))?;
    let second = digits(b, 17, 2).ok_or_else(|| bad("expected 2-digit seconds"))?;
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return Err(bad("expected HH:MM:SS"));
    }
    if !(1..=12).contains(&month) {
        return Err(bad("month out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(bad("day out of range"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad("time of day out of range"));
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err(bad("expected digits after '.'"));
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            let oh = digits(b, i + 1, 2).ok_or_else(|| bad("bad offset hours"))?;
            let om = digits(b, i + 4, 2).ok_or_else(|| bad("bad offset minutes"))?;
            if b[i + 3] != b':' || oh > 23 || om > 59 {
                return Err(bad("bad offset, expected +HH:MM"));
            }
            let v = oh * 60 + om;
            if sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad("expected 'Z' or an offset such as +02:00 at the end")),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    let t = secs * 1000 + millis;
    check_range(t).map_err(|_| bad("outside years 0000 to 9999"))
}

/// Accepts an epoch-millisecond instant if RFC 3339 can express it.
pub fn check_range(t: Millis) -> Result<Millis, TimeError> {
    if (MIN_MILLIS..=MAX_MILLIS).contains(&t) {
        Ok(t)
    } else {
        Err(TimeError(format!("epoch milliseconds {t} are outside years 0000 to 9999")))
    }
}

/// Formats as `YYYY-MM-DDTHH:MM:SS.mmmZ`, the one form every output uses.
pub fn format_rfc3339(t: Millis) -> String {
    let mut s = String::with_capacity(24);
    write_rfc3339(&mut s, t);
    s
}

/// Appends the `YYYY-MM-DDTHH:MM:SS.mmmZ` form of `t` to `out`.
pub fn write_rfc3339(out: &mut String, t: Millis) {
    match rfc3339_four_digit_year(t) {
        Some(b) => out.push_str(std::str::from_utf8(&b).expect("ASCII digits and separators")),
        None => rfc3339_any_year(out, t),
    }
}

/// [`write_rfc3339`] into bytes, for encoders writing JSON directly.
pub fn push_rfc3339(out: &mut Vec<u8>, t: Millis) {
    match rfc3339_four_digit_year(t) {
        Some(b) => out.extend_from_slice(&b),
        None => {
            let mut s = String::new();
            rfc3339_any_year(&mut s, t);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn rfc3339_parts(t: Millis) -> [i64; 7] {
    let days = t.div_euclid(DAY);
    let ms_of_day = t.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    let (h, rest) = (ms_of_day / HOUR, ms_of_day % HOUR);
    let (mi, rest) = (rest / MINUTE, rest % MINUTE);
    let (sec, ms) = (rest / SECOND, rest % SECOND);
    [y, m, d, h, mi, sec, ms]
}

/// Every output record carries a timestamp: digits by hand, two at a time
/// from a table, not through the formatting machinery, for the years of
/// four digits.
fn rfc3339_four_digit_year(t: Millis) -> Option<[u8; 24]> {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let [y, m, d, h, mi, sec, ms] = rfc3339_parts(t);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    // Every value is below 100 here (ms % 100 and y's halves included).
    let mut pair = |at: usize, v: i64| {
        let i = 2 * v as usize;
        b[at..at + 2].copy_from_slice(&PAIRS[i..i + 2]);
    };
    pair(0, y / 100);
    pair(2, y % 100);
    pair(5, m);
    pair(8, d);
    pair(11, h);
    pair(14, mi);
    pair(17, sec);
    pair(21, ms % 100);
    b[20] = b'0' + (ms / 100) as u8;
    Some(b)
}

fn rfc3339_any_year(out: &mut String, t: Millis) {
    use std::fmt::Write;
    let [y, m, d, h, mi, sec, ms] = rfc3339_parts(t);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{sec:02}.{ms:03}Z");
}

/// Parses durations such as `30d`, `24h`, `90m`, `1h30m`, `500ms`, `2w`.
pub fn parse_duration(s: &str) -> Result<Millis, TimeError> {
    let bad = |why: &str| {
        TimeError(format!(
            "{} is not a duration: {why} (use a number and a unit: ms, s, m, h, d or w, e.g. \"30d\" or \"1h30m\")",
            crate::text::excerpt(s)
        ))
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(bad("it is empty"));
    }
    let b = t.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(bad("expected a number"));
        }
        let n: i64 = t[start..i].parse().map_err(|_| bad("number too large"))?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = match &t[ustart..i] {
            "ms" => 1,
            "s" => SECOND,
            "m" => MINUTE,
            "h" => HOUR,
            "d" => DAY,
            "w" => 7 * DAY,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit")),
        };
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(|| bad("too large"))?;
    }
    Ok(total)
}

/// Formats a duration in the largest whole unit (`30d`, `24h`, `90m`), for summaries.
pub fn format_duration(ms: Millis) -> String {
    for (unit, name) in [(7 * DAY, "w"), (DAY, "d"), (HOUR, "h"), (MINUTE, "m"), (SECOND, "s")] {
        if ms != 0 && ms % unit == 0 && (name != "w" || ms / unit > 1) {
            return format!("{}{name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_contract_example() {
        let t = parse_rfc3339("2026-11-25T16:00:00.000Z").unwrap();
        assert_eq!(t, 1_795_622_400_000);
        assert_eq!(format_rfc3339(t), "2026-11-25T16:00:00.000Z");
    }

    #[test]
    fn offsets_fractions_and_epoch() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00").unwrap(), 0);
        assert_eq!(parse_rfc3339("1969-12-31T23:00:00-01:00").unwrap(), 0);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.123456Z").unwrap(), 123);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.5Z").unwrap(), 500);
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z").unwrap() % DAY, 0);
    }

    #[test]
    fn a_long_bad_timestamp_is_quoted_only_in_part() {
        // A hostile timestamp of a megabyte must not become a megabyte of
        // error message (the fuzzer found 2.6 KB from 3 KB).
        let hostile = format!("9999-12-31T23:5{}", "b\\".repeat(400_000));
        let message = parse_rfc3339(&hostile).unwrap_err().to_string();
        assert!(message.len() < 200, "{} bytes: {message}", message.len());
        assert!(message.contains(&format!("({} bytes)", hostile.len())), "{message}");
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for s in [
            "",
            "2026-11-25",
            "2026-11-25T16:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T16:00:00.Z",
            "2026-11-25T16:00:00+0200",
            "yesterday",
            "2026-11-25T16:00:00Zjunk",
        ] {
            assert!(parse_rfc3339(s).is_err(), "{s}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), 30 * DAY);
        assert_eq!(parse_duration("1h30m").unwrap(), 90 * MINUTE);
        assert_eq!(parse_duration("500ms").unwrap(), 500);
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("30x").is_err());
        assert!(parse_duration("d").is_err());
        let unit = parse_duration("30x").unwrap_err().to_string();
        assert!(unit.starts_with("\"30x\" is not a duration: unknown unit"), "{unit}");
        // A hostile value (a config file or flag of any size) is quoted in part.
        let long = format!("{}x", "9".repeat(10_000));
        let e = parse_duration(&long).unwrap_err().to_string();
        assert!(e.len() < 300 && e.contains("(10001 bytes)"), "{e}");
        assert_eq!(format_duration(30 * DAY), "30d");
        assert_eq!(format_duration(24 * HOUR), "1d");
        assert_eq!(format_duration(14 * DAY), "2w");
        assert_eq!(format_duration(7 * DAY), "7d");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(t in MIN_MILLIS..=MAX_MILLIS) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(t)).unwrap(), t);
        }

        #[test]
        fn digits_by_hand_are_what_the_formatter_writes(t in -62_167_219_200_000i64..253_402_300_800_000) {
            let mut expected = String::new();
            rfc3339_any_year(&mut expected, t);
            let by_hand = rfc3339_four_digit_year(t).expect("a year of four digits");
            prop_assert_eq!(std::str::from_utf8(&by_hand).unwrap(), expected);
        }
    }
}
