//! The binary encoding of a lead's state, used for RocksDB values and changelog
//! records: compact, little-endian, and versioned by its first byte so that the
//! format can evolve (a reader refuses versions it does not know, with an error,
//! instead of misreading them).
//!
//! Format 2 follows the version byte with the [`Model::fingerprint`] of the
//! model that wrote the state, so that a state written under another model is
//! recognised, read under that model's [`StateLayout`] (what each per-rule,
//! per-tally, per-window and per-segment slot means, by name, as the
//! partition's checkpoint remembers it) and migrated by name
//! ([`decode_migrating`]) rather than misread by position. Format 1 (no fingerprint) is still read, as written under the
//! current model.
//!
//! The threshold-crossing cache of [`LeadState`] is derived data and is not
//! stored; a decoded state recomputes it on first use.

use crate::checkpoint::ModelLayout;
use leadscore_core::cells::{Cells, TallyState};
use leadscore_core::event::{Field, OwnedValue, Stage};
use leadscore_core::layout::{migrate, Retired, StateLayout};
use leadscore_core::model::Grade;
use leadscore_core::state::{Deadlines, LeadState, Membership, Opportunity};
use leadscore_core::window::{Entry, WindowMeta};
use leadscore_core::{Kind, Model};

/// The first format: no layout fingerprint.
pub const FORMAT_V1: u8 = 1;
/// The current format: the writing model's fingerprint after the version byte.
pub const FORMAT_V2: u8 = 2;

/// A state value that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeStateError {
    #[error("state value is truncated (needed {needed} more bytes at offset {at})")]
    Truncated { at: usize, needed: usize },
    #[error("state format version {0} is not known to this build (it knows 1 and 2)")]
    UnknownFormat(u8),
    #[error(
        "state was written under another model (fingerprint {0:016x}) whose layout the partition's \
         checkpoint does not remember"
    )]
    UnknownModel(u64),
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

/// Appends the encoding of `s`, a state of a lead under `model`, to `out`.
pub fn encode_state(s: &LeadState, model: &Model, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u8(FORMAT_V2);
    w.u64(model.fingerprint());
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
    let c = &s.cells;
    w.varint(c.rule_count() as u64);
    for matches in c.rules() {
        w.u32(matches);
    }
    w.varint(c.tally_count() as u64);
    for t in c.tallies() {
        w.opt_f64(t.total);
        w.opt_i64(t.last);
    }
    w.varint(c.window_count() as u64);
    for m in c.window_metas() {
        w.f64(m.total);
        w.u32(m.len);
        w.u8(u8::from(m.keeps_max) | u8::from(m.has_negative) << 1);
    }
    w.varint(c.entries().len() as u64);
    for e in c.entries() {
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
    w.varint(c.ids().len() as u64);
    w.u32(c.ids_next());
    for id in c.ids() {
        w.u64(id);
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
    // Format, layout, version, clock, score, anchor, fit, grade, criteria,
    // tests, stages, member, next due.
    parts.push(("fixed fields".into(), 1 + 8 + VARINT + 8 * 4 + 1 + 8 + 8 + 1 + 16 + 9));
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
        2 * VARINT + 4 * template.cells.rule_count() as u64 + 18 * template.cells.tally_count() as u64,
    ));
    parts.push(("window headers".into(), 2 * VARINT + 13 * template.cells.window_count() as u64));
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

/// How many slots of each kind a layout has: what a positional decode checks.
struct Slots {
    rules: usize,
    tallies: usize,
    windows: usize,
}

impl Slots {
    fn of(layout: &StateLayout) -> Slots {
        Slots { rules: layout.rules.len(), tallies: layout.tallies.len(), windows: layout.windows.len() }
    }
}

/// Reads the format byte and the layout fingerprint (`None` for format 1).
fn header(r: &mut Reader<'_>) -> R<Option<u64>> {
    match r.u8()? {
        FORMAT_V1 => Ok(None),
        FORMAT_V2 => Ok(Some(r.u64()?)),
        f => Err(DecodeStateError::UnknownFormat(f)),
    }
}

/// The fingerprint of the model a state was written under (`None`: format
/// 1, written before fingerprints were recorded).
pub fn state_model(bytes: &[u8]) -> Result<Option<u64>, DecodeStateError> {
    header(&mut Reader { b: bytes, at: 0 })
}

/// Decodes a state written by [`encode_state`] under `model`; a state of
/// another model is [`DecodeStateError::UnknownModel`] (see
/// [`decode_migrating`]). Format 1 is read as written under `model`.
pub fn decode_state(bytes: &[u8], model: &Model) -> Result<LeadState, DecodeStateError> {
    let mut r = Reader { b: bytes, at: 0 };
    match header(&mut r)? {
        Some(fp) if fp != model.fingerprint() => Err(DecodeStateError::UnknownModel(fp)),
        _ => body(r, &Slots::of(model.layout())),
    }
}

/// Decodes a state written under `model` or under one of the earlier models
/// in `known` (fingerprint and layout, as the partition's checkpoint
/// remembers them). A state of an earlier model is moved to `model`'s layout
/// by name ([`migrate`]) and comes with the memberships of segments that
/// `model` no longer has: the caller must re-evaluate it
/// ([`leadscore_core::engine::remodel`]).
pub fn decode_migrating(
    bytes: &[u8],
    model: &Model,
    known: &[ModelLayout],
) -> Result<(LeadState, Option<Vec<Retired>>), DecodeStateError> {
    let mut r = Reader { b: bytes, at: 0 };
    match header(&mut r)? {
        Some(fp) if fp != model.fingerprint() => {
            let from = &known.iter().find(|l| l.fingerprint == fp).ok_or(DecodeStateError::UnknownModel(fp))?.layout;
            let mut state = body(r, &Slots::of(from))?;
            let retired = migrate(&mut state, from, model);
            Ok((state, Some(retired)))
        }
        _ => Ok((body(r, &Slots::of(model.layout()))?, None)),
    }
}

/// The timer of an encoded state (its `next_due`), whatever its layout:
/// what a restore needs to index timers without decoding whole states.
pub fn peek_next_due(bytes: &[u8]) -> Result<Option<i64>, DecodeStateError> {
    let mut r = Reader { b: bytes, at: 0 };
    header(&mut r)?;
    r.varint()?;
    // clock, score, anchor, fit; grade; criteria, tests; stages; member.
    r.take(8 * 4 + 1 + 8 * 2 + 1 + 16)?;
    r.opt_i64()
}

/// The body of a state after its header, with `slots` slots of each kind.
fn body(mut r: Reader<'_>, slots: &Slots) -> Result<LeadState, DecodeStateError> {
    let bytes = r.b;
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
    check("stateful rules", n, slots.rules)?;
    // Sized for the counters, the headers and a few entries and ids: one
    // allocation for most leads.
    let mut cells = Cells::with_capacity(n + slots.tallies + slots.windows + 32);
    for _ in 0..n {
        cells.push_rule(r.u32()?);
    }
    let n = r.count(2)?;
    check("tallies", n, slots.tallies)?;
    for _ in 0..n {
        cells.push_tally(TallyState { total: r.opt_f64()?, last: r.opt_i64()? });
    }
    let n = r.count(13)?;
    check("windows", n, slots.windows)?;
    for _ in 0..n {
        let (total, len, flags) = (r.f64()?, r.u32()?, r.u8()?);
        cells.push_window(WindowMeta { total, len, keeps_max: flags & 1 != 0, has_negative: flags & 2 != 0 });
    }
    let n = r.count(16)?;
    for _ in 0..n {
        cells.push_entry(Entry { at: r.i64()?, value: r.f64()? });
    }
    if !cells.consistent() {
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
    cells.set_ids(&ids, next);
    if r.at != bytes.len() {
        return Err(DecodeStateError::Corrupt(format!("{} trailing bytes", bytes.len() - r.at)));
    }
    let mut state = LeadState {
        version,
        clock,
        score,
        score_at,
        profile,
        fit,
        grade,
        criteria,
        profile_tests,
        cells,
        opportunities,
        stages_reached,
        stages_now: 0,
        segments,
        member,
        next_due,
        deadlines: Deadlines::default(),
        expiry_floor: leadscore_core::Millis::MIN,
    };
    state.restage();
    Ok(state)
}

#[cfg(test)]
mod tests;
