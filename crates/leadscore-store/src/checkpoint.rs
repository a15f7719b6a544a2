//! Where a partition's processing stands, stored with the states it produced,
//! and the partition's running counts (leads, timers, segment members), kept
//! incrementally with the states so that gauges never need a scan.
//!
//! The same record closes every step in the changelog (a checkpoint marker),
//! where it also carries the writer's ownership epoch of the partition, so
//! that a restore can ignore what a former owner wrote after a newer owner
//! took over (see docs/runtime.md). A checkpoint in
//! the local store may also carry a [`Replay`]: the decisions of the step that
//! was in flight when it was written (see docs/runtime.md).

use leadscore_core::layout::StateLayout;
use std::collections::BTreeMap;

/// The next input offset to read of each input topic of the partition (group),
/// the changelog offset the local states reflect, and the version of the model
/// that computed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub next_offsets: BTreeMap<String, i64>,
    pub changelog_next_offset: Option<i64>,
    pub model_version: String,
    /// In event-time mode, the latest event time seen (timers due before it
    /// have fired); kept so that a restart fires the same timers.
    pub watermark: Option<i64>,
    pub counts: Counts,
    /// The ownership epoch of the writer: each new owner of the partition
    /// takes the highest epoch it restored plus one (high 32 bits), tie-broken
    /// by its consumer-group generation (low 32 bits).
    pub epoch: Option<i64>,
    /// Written just before a step's outputs are published, cleared by its
    /// commit: how to replay that step identically after a crash.
    pub replay: Option<Replay>,
    /// The models the partition's lead states may have been written under:
    /// the writer's first, then earlier ones that leads not touched since a
    /// model change are still encoded in (empty before format 4).
    pub layouts: Vec<ModelLayout>,
    /// When the partition last switched to another model: a lead migrated
    /// later is re-evaluated as of this instant (or its own clock if later).
    pub switched_at: Option<i64>,
    /// While leads of earlier models may remain (`layouts` has more than
    /// one): the last lead the sweep that migrates them all has passed
    /// (`None`: it starts from the first).
    pub sweep_after: Option<String>,
}

/// A model's fingerprint and the layout of the states it writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelLayout {
    pub fingerprint: u64,
    pub layout: StateLayout,
}

impl ModelLayout {
    pub fn of(model: &leadscore_core::Model) -> ModelLayout {
        ModelLayout { fingerprint: model.fingerprint(), layout: model.layout().clone() }
    }
}

/// How the step in flight must be replayed after a crash, so that it publishes
/// the same records: its wall-clock timers fired at `tick` before any of its
/// events, and no later tick may fire before the inputs below `until` (next
/// offset per topic) are applied again. Published to the changelog before the
/// step's outputs, so that whichever instance replays the step knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    pub tick: Option<i64>,
    pub until: BTreeMap<String, i64>,
}

const REPLAY_FORMAT: u8 = 1;

impl Replay {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![REPLAY_FORMAT];
        push_optional_i64(&mut out, self.tick);
        push_offsets(&mut out, &self.until);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Replay, String> {
        let mut c = Cursor { bytes, at: 0 };
        let format = c.take(1)?[0];
        if format != REPLAY_FORMAT {
            return Err(format!("unknown replay record format {format}"));
        }
        let replay = Replay { tick: c.optional_i64()?, until: c.offsets()? };
        if c.at != bytes.len() {
            return Err("replay record has trailing bytes".into());
        }
        Ok(replay)
    }
}

/// What the partition holds, as of the checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub leads: i64,
    /// Leads with a pending timer.
    pub timers: i64,
    /// Members of each segment, by segment index.
    pub members: Vec<i64>,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.leads += other.leads;
        self.timers += other.timers;
        if self.members.len() < other.members.len() {
            self.members.resize(other.members.len(), 0);
        }
        for (m, o) in self.members.iter_mut().zip(&other.members) {
            *m += o;
        }
    }
}

/// Version 1 had no counts, version 2 no epoch and replay, version 3 no
/// layouts, version 4 no sweep; all are still read (counts start at zero, no
/// epoch, nothing to replay, no layout known, the sweep from the start).
const FORMAT_V1: u8 = 1;
const FORMAT_V2: u8 = 2;
const FORMAT_V3: u8 = 3;
const FORMAT_V4: u8 = 4;
const FORMAT_V5: u8 = 5;

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s =
            self.bytes.get(self.at..self.at + n).ok_or_else(|| format!("checkpoint truncated at byte {}", self.at))?;
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn optional_i64(&mut self) -> Result<Option<i64>, String> {
        match self.take(1)? {
            [0] => Ok(None),
            _ => Ok(Some(self.i64()?)),
        }
    }
    fn offsets(&mut self) -> Result<BTreeMap<String, i64>, String> {
        let n = self.u32()?;
        let mut offsets = BTreeMap::new();
        for _ in 0..n {
            let topic = self.string()?;
            offsets.insert(topic, self.i64()?);
        }
        Ok(offsets)
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "checkpoint text is not UTF-8".to_string())
    }
    fn strings(&mut self) -> Result<Vec<String>, String> {
        let n = self.u32()?;
        (0..n).map(|_| self.string()).collect()
    }
    fn layout(&mut self) -> Result<ModelLayout, String> {
        let fingerprint = u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"));
        let layout = StateLayout {
            rules: self.strings()?,
            tallies: self.strings()?,
            windows: self.strings()?,
            segments: self.strings()?,
        };
        Ok(ModelLayout { fingerprint, layout })
    }
}

fn push_layout(out: &mut Vec<u8>, m: &ModelLayout) {
    out.extend_from_slice(&m.fingerprint.to_le_bytes());
    let l = &m.layout;
    for names in [&l.rules, &l.tallies, &l.windows, &l.segments] {
        out.extend_from_slice(&(names.len() as u32).to_le_bytes());
        for n in names {
            push_str(out, n);
        }
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn push_optional_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.push(0),
    }
}

fn push_offsets(out: &mut Vec<u8>, offsets: &BTreeMap<String, i64>) {
    out.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
    for (topic, offset) in offsets {
        push_str(out, topic);
        out.extend_from_slice(&offset.to_le_bytes());
    }
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_V5];
        push_str(&mut out, &self.model_version);
        out.extend_from_slice(&self.changelog_next_offset.unwrap_or(-1).to_le_bytes());
        push_optional_i64(&mut out, self.watermark);
        push_offsets(&mut out, &self.next_offsets);
        out.extend_from_slice(&self.counts.leads.to_le_bytes());
        out.extend_from_slice(&self.counts.timers.to_le_bytes());
        out.extend_from_slice(&(self.counts.members.len() as u32).to_le_bytes());
        for m in &self.counts.members {
            out.extend_from_slice(&m.to_le_bytes());
        }
        push_optional_i64(&mut out, self.epoch);
        match &self.replay {
            Some(r) => {
                out.push(1);
                push_optional_i64(&mut out, r.tick);
                push_offsets(&mut out, &r.until);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(self.layouts.len() as u32).to_le_bytes());
        for l in &self.layouts {
            push_layout(&mut out, l);
        }
        push_optional_i64(&mut out, self.switched_at);
        match &self.sweep_after {
            Some(lead) => {
                out.push(1);
                push_str(&mut out, lead);
            }
            None => out.push(0),
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        let mut c = Cursor { bytes, at: 0 };
        let format = c.take(1)?[0];
        if !(FORMAT_V1..=FORMAT_V5).contains(&format) {
            return Err(format!("unknown checkpoint format {format}"));
        }
        let model_version = c.string()?;
        let changelog = c.i64()?;
        let watermark = c.optional_i64()?;
        let next_offsets = c.offsets()?;
        let mut counts = Counts::default();
        if format >= FORMAT_V2 {
            counts.leads = c.i64()?;
            counts.timers = c.i64()?;
            let n = c.u32()?;
            for _ in 0..n {
                counts.members.push(c.i64()?);
            }
        }
        let (mut epoch, mut replay) = (None, None);
        if format >= FORMAT_V3 {
            epoch = c.optional_i64()?;
            if c.take(1)? != [0] {
                replay = Some(Replay { tick: c.optional_i64()?, until: c.offsets()? });
            }
        }
        let (mut layouts, mut switched_at) = (Vec::new(), None);
        if format >= FORMAT_V4 {
            let n = c.u32()?;
            for _ in 0..n {
                layouts.push(c.layout()?);
            }
            switched_at = c.optional_i64()?;
        }
        let mut sweep_after = None;
        if format >= FORMAT_V5 && c.take(1)? != [0] {
            sweep_after = Some(c.string()?);
        }
        if c.at != bytes.len() {
            return Err("checkpoint has trailing bytes".into());
        }
        Ok(Checkpoint {
            next_offsets,
            changelog_next_offset: (changelog >= 0).then_some(changelog),
            model_version,
            watermark,
            counts,
            epoch,
            replay,
            layouts,
            switched_at,
            sweep_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_truncation() {
        let c = Checkpoint {
            next_offsets: [("page-views".to_string(), 42), ("lead-events".to_string(), 7)].into_iter().collect(),
            changelog_next_offset: Some(9),
            model_version: "seed-1".into(),
            watermark: Some(-3),
            counts: Counts { leads: 5, timers: 3, members: vec![1, 0, -2] },
            epoch: Some(7),
            replay: Some(Replay { tick: Some(123), until: [("page-views".to_string(), 50)].into_iter().collect() }),
            layouts: vec![
                ModelLayout {
                    fingerprint: 0xfeed,
                    layout: StateLayout {
                        rules: vec!["capped".into()],
                        tallies: vec!["visits:count:window".into()],
                        windows: vec!["tally:visits:count:window".into(), "cap:capped".into()],
                        segments: vec!["hot".into(), "cold".into()],
                    },
                },
                ModelLayout::default(),
            ],
            switched_at: Some(77),
            sweep_after: Some("L-0042".into()),
        };
        let b = c.encode();
        let replay = c.replay.clone().expect("a replay");
        assert_eq!(Checkpoint::decode(&b), Ok(c));
        assert_eq!(Replay::decode(&replay.encode()), Ok(replay));
        for cut in 0..b.len() {
            assert!(Checkpoint::decode(&b[..cut]).is_err());
        }
        assert_eq!(Checkpoint::decode(&Checkpoint::default().encode()), Ok(Checkpoint::default()));
    }

    #[test]
    fn reads_version_1_without_counts() {
        let mut v1 = vec![FORMAT_V1];
        push_str(&mut v1, "seed-1");
        v1.extend_from_slice(&4i64.to_le_bytes());
        v1.push(0);
        v1.extend_from_slice(&1u32.to_le_bytes());
        push_str(&mut v1, "t");
        v1.extend_from_slice(&9i64.to_le_bytes());
        let c = Checkpoint::decode(&v1).expect("v1");
        assert_eq!(c.next_offsets.get("t"), Some(&9));
        assert_eq!((c.changelog_next_offset, c.counts), (Some(4), Counts::default()));
    }
}
