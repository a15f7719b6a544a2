//! Where a partition's processing stands, stored with the states it produced.

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
}

const FORMAT_V1: u8 = 1;

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
    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "checkpoint text is not UTF-8".to_string())
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_V1];
        push_str(&mut out, &self.model_version);
        out.extend_from_slice(&self.changelog_next_offset.unwrap_or(-1).to_le_bytes());
        match self.watermark {
            Some(w) => {
                out.push(1);
                out.extend_from_slice(&w.to_le_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(self.next_offsets.len() as u32).to_le_bytes());
        for (topic, offset) in &self.next_offsets {
            push_str(&mut out, topic);
            out.extend_from_slice(&offset.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        let mut c = Cursor { bytes, at: 0 };
        if c.take(1)? != [FORMAT_V1] {
            return Err("unknown checkpoint format".into());
        }
        let model_version = c.string()?;
        let changelog = c.i64()?;
        let watermark = match c.take(1)? {
            [0] => None,
            _ => Some(c.i64()?),
        };
        let n = c.u32()?;
        let mut next_offsets = BTreeMap::new();
        for _ in 0..n {
            let topic = c.string()?;
            next_offsets.insert(topic, c.i64()?);
        }
        if c.at != bytes.len() {
            return Err("checkpoint has trailing bytes".into());
        }
        Ok(Checkpoint {
            next_offsets,
            changelog_next_offset: (changelog >= 0).then_some(changelog),
            model_version,
            watermark,
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
        };
        let b = c.encode();
        assert_eq!(Checkpoint::decode(&b), Ok(c));
        for cut in 0..b.len() {
            assert!(Checkpoint::decode(&b[..cut]).is_err());
        }
        assert_eq!(Checkpoint::decode(&Checkpoint::default().encode()), Ok(Checkpoint::default()));
    }
}
