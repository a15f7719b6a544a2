//! The binary encoding of a lead's state, used for RocksDB values and changelog
//! records: compact, little-endian, and versioned by its first byte so that the
//! format can evolve (a reader refuses versions it does not know, with an error,
//! instead of misreading them).
//!
//! The threshold-crossing cache of [`LeadState`] is derived data and is not
//! stored; a decoded state recomputes it on first use.

use leadscore_core::event::{Field, OwnedValue, Stage};
use leadscore_core::model::Grade;
use leadscore_core::state::{LeadState, Membership, Opportunity, RuleState, TallyState, ThresholdDue};
use leadscore_core::window::{Entry, WindowMeta, Windows};
use leadscore_core::{Kind, Model};

/// The current format.
pub const FORMAT_V1: u8 = 1;

/// A state value that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeStateError {
    #[error("state value is truncated (needed {needed} more bytes at offset {at})")]
    Truncated { at: usize, needed: usize },
    #[error("state format version {0} is not known to this build (it knows 1)")]
    UnknownFormat(u8),
    #[error("state value is corrupt: {0}")]
    Corrupt(String),
    #[error("state was written for a model with {what} {stored}, the current model has {current}")]
    ModelMismatch { what: &'static str, stored: usize, current: usize },
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt_i64(&mut self, v: Option<i64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.i64(v);
            }
            None => self.u8(0),
        }
    }
    fn opt_f64(&mut self, v: Option<f64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.f64(v);
            }
            None => self.u8(0),
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

type R<T> = Result<T, DecodeStateError>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or(DecodeStateError::Truncated {
            at: self.at,
            needed: n.saturating_sub(self.b.len().saturating_sub(self.at)),
        })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> R<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn i64(&mut self) -> R<i64> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    fn f64(&mut self) -> R<f64> {
        Ok(f64::from_le_bytes(self.arr()?))
    }
    fn u128(&mut self) -> R<u128> {
        Ok(u128::from_le_bytes(self.arr()?))
    }
    fn varint(&mut self) -> R<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeStateError::Corrupt("varint longer than 10 bytes".into()))
    }
    /// A count of items that each take at least `min_bytes`: refuses counts the
    /// remaining bytes cannot hold, so corrupt input cannot ask for huge vectors.
    fn count(&mut self, min_bytes: usize) -> R<usize> {
        let n = self.varint()? as usize;
        if n.saturating_mul(min_bytes) > self.b.len() - self.at {
            return Err(DecodeStateError::Corrupt(format!("count {n} exceeds the remaining bytes")));
        }
        Ok(n)
    }
    fn str(&mut self) -> R<&'a str> {
        let n = self.count(1)?;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeStateError::Corrupt("text is not UTF-8".into()))
    }
    fn opt_i64(&mut self) -> R<Option<i64>> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some(self.i64()?),
        })
    }
    fn opt_f64(&mut self) -> R<Option<f64>> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some(self.f64()?),
        })
    }
}

const VALUE_TEXT: u8 = 0;
const VALUE_INTEGER: u8 = 1;
const VALUE_NUMBER: u8 = 2;
const VALUE_LIST: u8 = 3;
const NO_STAGE: u8 = 0xff;

/// Appends the encoding of `s` to `out`.
pub fn encode_state(s: &LeadState, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u8(FORMAT_V1);
    w.varint(s.version);
    w.i64(s.clock);
    w.f64(s.score);
    w.i64(s.score_at);
    w.f64(s.fit);
    w.u8(s.grade as u8);
    w.u64(s.criteria);
    w.u64(s.profile_tests);
    w.u8(s.stages_reached);
    w.u128(s.member);
    w.opt_i64(s.next_due);
    w.varint(s.profile.len() as u64);
    for (field, value) in &s.profile {
        w.u8(*field as u8);
        match value {
            OwnedValue::Text(t) => {
                w.u8(VALUE_TEXT);
                w.str(t);
            }
            OwnedValue::Integer(i) => {
                w.u8(VALUE_INTEGER);
                w.i64(*i);
            }
            OwnedValue::Number(n) => {
                w.u8(VALUE_NUMBER);
                w.f64(*n);
            }
            OwnedValue::TextList(l) => {
                w.u8(VALUE_LIST);
                w.varint(l.len() as u64);
                for t in l.iter() {
                    w.str(t);
                }
            }
        }
    }
    w.varint(s.rules.len() as u64);
    for r in &s.rules {
        w.u32(r.matches);
    }
    w.varint(s.tallies.len() as u64);
    for t in &s.tallies {
        w.opt_f64(t.total);
        w.opt_i64(t.last);
    }
    w.varint(s.windows.meta.len() as u64);
    for m in &s.windows.meta {
        w.f64(m.total);
        w.u32(m.len);
        w.u8(u8::from(m.keeps_max) | u8::from(m.has_negative) << 1);
    }
    w.varint(s.windows.entries.len() as u64);
    for e in &s.windows.entries {
        w.i64(e.at);
        w.f64(e.value);
    }
    w.varint(s.opportunities.len() as u64);
    for o in &s.opportunities {
        w.str(&o.id);
        w.u8(o.stage.map_or(NO_STAGE, |s| s as u8));
    }
    w.varint(s.segments.len() as u64);
    for m in &s.segments {
        w.u16(m.segment);
        w.i64(m.since);
    }
    w.varint(s.recent_ids.ids.len() as u64);
    w.u32(s.recent_ids.next);
    for id in &s.recent_ids.ids {
        w.u64(*id);
    }
}

/// The largest encoding [`encode_state`] can produce under `model`, with
/// what makes it up (largest first), from the bounds of
/// [`leadscore_core::bounds`] and the model's window bounds. Each part
/// counts its worst case (a varint at its longest), so this is an upper
/// bound, not an estimate.
pub fn max_state_bytes(model: &Model) -> (u64, Vec<(String, u64)>) {
    use leadscore_core::bounds::*;
    use leadscore_core::event::FieldType;
    const VARINT: u64 = 10;
    let template = LeadState::new(model, 0);
    let mut parts: Vec<(String, u64)> = Vec::new();
    // Format, version, clock, score, anchor, fit, grade, criteria, tests,
    // stages, member, next due.
    parts.push(("fixed fields".into(), 1 + VARINT + 8 * 4 + 1 + 8 + 8 + 1 + 16 + 9));
    let profile: u64 = Kind::ProfileUpdate
        .properties()
        .iter()
        .map(|(field, _)| {
            2 + match field.field_type() {
                FieldType::Text => VARINT + MAX_PROFILE_TEXT_BYTES as u64,
                FieldType::TextList => VARINT + MAX_LIST_ITEMS as u64 * (VARINT + MAX_LIST_ITEM_BYTES as u64),
                _ => 8,
            }
        })
        .sum();
    parts.push(("profile".into(), VARINT + profile));
    parts.push((
        "rule and tally counters".into(),
        2 * VARINT + 4 * template.rules.len() as u64 + 18 * template.tallies.len() as u64,
    ));
    parts.push(("window headers".into(), 2 * VARINT + 13 * template.windows.meta.len() as u64));
    for (name, entries) in model.window_bounds() {
        parts.push((name, entries.saturating_mul(16)));
    }
    parts.push((
        format!("opportunities (at most {MAX_OPPORTUNITIES})"),
        VARINT + MAX_OPPORTUNITIES as u64 * (VARINT + MAX_OPPORTUNITY_ID_BYTES as u64 + 1),
    ));
    parts.push(("segments".into(), VARINT + 10 * model.segments.len() as u64));
    parts.push(("recent event ids".into(), VARINT + 4 + 8 * model.remember_event_ids as u64));
    parts.sort_by_key(|p| std::cmp::Reverse(p.1));
    (parts.iter().fold(0u64, |t, p| t.saturating_add(p.1)), parts)
}

fn check(what: &'static str, stored: usize, current: usize) -> R<()> {
    if stored == current {
        Ok(())
    } else {
        Err(DecodeStateError::ModelMismatch { what, stored, current })
    }
}

/// Decodes a state written by [`encode_state`] for the same model.
pub fn decode_state(bytes: &[u8], model: &Model) -> Result<LeadState, DecodeStateError> {
    let mut r = Reader { b: bytes, at: 0 };
    let format = r.u8()?;
    if format != FORMAT_V1 {
        return Err(DecodeStateError::UnknownFormat(format));
    }
    // A template gives the model's vector sizes to check against.
    let template = LeadState::new(model, 0);
    let version = r.varint()?;
    let clock = r.i64()?;
    let score = r.f64()?;
    let score_at = r.i64()?;
    let fit = r.f64()?;
    let grade = *Grade::ALL.get(usize::from(r.u8()?)).ok_or_else(|| DecodeStateError::Corrupt("bad grade".into()))?;
    let criteria = r.u64()?;
    let profile_tests = r.u64()?;
    let stages_reached = r.u8()?;
    let member = r.u128()?;
    let next_due = r.opt_i64()?;
    let n = r.count(3)?;
    let mut profile = Vec::with_capacity(n);
    for _ in 0..n {
        let field =
            *Field::ALL.get(usize::from(r.u8()?)).ok_or_else(|| DecodeStateError::Corrupt("bad field".into()))?;
        let value = match r.u8()? {
            VALUE_TEXT => OwnedValue::Text(r.str()?.into()),
            VALUE_INTEGER => OwnedValue::Integer(r.i64()?),
            VALUE_NUMBER => OwnedValue::Number(r.f64()?),
            VALUE_LIST => {
                let n = r.count(1)?;
                let mut l = Vec::with_capacity(n);
                for _ in 0..n {
                    l.push(Box::<str>::from(r.str()?));
                }
                OwnedValue::TextList(l.into())
            }
            t => return Err(DecodeStateError::Corrupt(format!("bad value tag {t}"))),
        };
        profile.push((field, value));
    }
    let n = r.count(4)?;
    check("stateful rules", n, template.rules.len())?;
    let rules = (0..n).map(|_| Ok(RuleState { matches: r.u32()? })).collect::<R<Vec<_>>>()?;
    let n = r.count(2)?;
    check("tallies", n, template.tallies.len())?;
    let tallies = (0..n).map(|_| Ok(TallyState { total: r.opt_f64()?, last: r.opt_i64()? })).collect::<R<Vec<_>>>()?;
    let n = r.count(13)?;
    check("windows", n, template.windows.meta.len())?;
    let meta = (0..n)
        .map(|_| {
            let (total, len, flags) = (r.f64()?, r.u32()?, r.u8()?);
            Ok(WindowMeta { total, len, keeps_max: flags & 1 != 0, has_negative: flags & 2 != 0 })
        })
        .collect::<R<Vec<_>>>()?;
    let n = r.count(16)?;
    let entries = (0..n).map(|_| Ok(Entry { at: r.i64()?, value: r.f64()? })).collect::<R<Vec<_>>>()?;
    if meta.iter().map(|m| m.len as usize).sum::<usize>() != entries.len() {
        return Err(DecodeStateError::Corrupt("window lengths do not add up to the entries".into()));
    }
    let n = r.count(2)?;
    let mut opportunities = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.str()?.into();
        let stage = match r.u8()? {
            NO_STAGE => None,
            s => Some(*Stage::ALL.get(usize::from(s)).ok_or_else(|| DecodeStateError::Corrupt("bad stage".into()))?),
        };
        opportunities.push(Opportunity { id, stage });
    }
    let n = r.count(10)?;
    let segments = (0..n).map(|_| Ok(Membership { segment: r.u16()?, since: r.i64()? })).collect::<R<Vec<_>>>()?;
    let n = r.count(8)?;
    let next = r.u32()?;
    let ids = (0..n).map(|_| r.u64()).collect::<R<Vec<_>>>()?;
    if r.at != bytes.len() {
        return Err(DecodeStateError::Corrupt(format!("{} trailing bytes", bytes.len() - r.at)));
    }
    Ok(LeadState {
        version,
        clock,
        score,
        score_at,
        profile,
        fit,
        grade,
        criteria,
        profile_tests,
        rules,
        tallies,
        windows: Windows { meta, entries },
        opportunities,
        stages_reached,
        segments,
        member,
        recent_ids: leadscore_core::dedup::RecentIds { ids, next },
        next_due,
        threshold_due: ThresholdDue::default(),
    })
}

#[cfg(test)]
mod tests;
