//! The simulated read_committed reader of the changelog, slow and in small
//! pieces, as a restore meets it.

use super::*;

/// Simulated milliseconds to read one changelog record, and the most records
/// one read returns (a fetch's size limit): slow, so that a restore of a few
/// hundred records outlasts a session unless the group is polled meanwhile.
const READ_COST: i64 = 20;
const READ_MAX: usize = 10;

/// A read_committed reader of the changelog.
pub struct SimChangelog<'s> {
    pub caller: Caller<'s>,
    pub topic: String,
}

impl Changelog for SimChangelog<'_> {
    fn watermarks(&mut self, partition: Partition) -> Result<(i64, i64), PortError> {
        self.caller.call(|w| Ok((0, w.broker.log(&self.topic, partition).map_or(0, |l| l.end()))))
    }

    fn start(&mut self, partition: Partition, from: i64) -> Result<(), PortError> {
        self.caller.call(|w| {
            w.slots[self.caller.slot].reader = Some((partition, from));
            Ok(())
        })
    }

    fn read(&mut self, timeout: Duration, max: usize, out: &mut Vec<ChangelogRecord>) -> Result<(), PortError> {
        self.caller.call(|w| {
            let slot = self.caller.slot;
            let Some((p, mut at)) = w.slots[slot].reader else { return Ok(()) };
            let Some(log) = w.broker.log(&self.topic, p) else { return Ok(()) };
            let end = log.readable_end(true);
            let n = 1 + w.rng.below(max.clamp(1, READ_MAX) as u64) as usize;
            let mut taken = 0;
            while at < end && taken < n {
                if log.visible(at, true) {
                    let r = &log.records[at as usize];
                    let header = |name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
                    out.push(ChangelogRecord {
                        offset: at,
                        key: r.key.clone(),
                        value: r.value.clone(),
                        timestamp: Some(r.timestamp),
                        kind: ChangelogKind::of(&r.key, header(headers::CHANGELOG_RECORD).as_deref()),
                        epoch: header(headers::CHANGELOG_EPOCH)
                            .and_then(|v| String::from_utf8(v).ok())
                            .and_then(|s| s.parse().ok()),
                    });
                    taken += 1;
                }
                at += 1;
            }
            if taken == 0 {
                w.now += (timeout.as_millis() as i64).min(10);
            }
            // Reading takes time: a large restore outlasts a session unless
            // the runtime keeps polling its group meanwhile.
            w.now += taken as i64 * READ_COST;
            w.slots[slot].reader = Some((p, at));
            Ok(())
        })
    }

    fn position(&mut self) -> Option<i64> {
        let w = self.caller.sim.lock();
        w.slots[self.caller.slot].reader.map(|(_, at)| at)
    }

    fn stop(&mut self) {
        let _ = self.caller.call(|w| {
            w.slots[self.caller.slot].reader = None;
            Ok(())
        });
    }
}
