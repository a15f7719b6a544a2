//! Key layouts, shared by every store so that their scans agree:
//!
//! - state: `partition u32 BE` + lead id bytes;
//! - timer: `partition u32 BE` + `due` as order-preserving `u64 BE` + lead id bytes.
//!
//! Big-endian integers make byte order equal numeric order, so the timers of a
//! partition are scanned in due order with an upper bound, and a partition's keys
//! form one contiguous range.

use crate::Partition;
use leadscore_core::Millis;

/// `i64` to `u64` preserving order (flip the sign bit).
pub fn due_bits(due: Millis) -> u64 {
    (due as u64) ^ (1 << 63)
}

pub fn due_from_bits(bits: u64) -> Millis {
    (bits ^ (1 << 63)) as i64
}

pub fn state_key(partition: Partition, lead: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + lead.len());
    put_state_key(&mut k, partition, lead);
    k
}

/// [`state_key`] into `buf` (cleared first), which a writer of many keys reuses.
pub fn put_state_key(buf: &mut Vec<u8>, partition: Partition, lead: &str) {
    buf.clear();
    buf.extend_from_slice(&partition.to_be_bytes());
    buf.extend_from_slice(lead.as_bytes());
}

pub fn timer_key(partition: Partition, due: Millis, lead: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(12 + lead.len());
    put_timer_key(&mut k, partition, due, lead);
    k
}

/// [`timer_key`] into `buf` (cleared first).
pub fn put_timer_key(buf: &mut Vec<u8>, partition: Partition, due: Millis, lead: &str) {
    buf.clear();
    buf.extend_from_slice(&partition.to_be_bytes());
    buf.extend_from_slice(&due_bits(due).to_be_bytes());
    buf.extend_from_slice(lead.as_bytes());
}

/// The first key after every timer of `partition` due at or before `up_to`.
pub fn timer_upper_bound(partition: Partition, up_to: Millis) -> Vec<u8> {
    let mut k = Vec::with_capacity(12);
    k.extend_from_slice(&partition.to_be_bytes());
    match up_to.checked_add(1) {
        Some(next) => k.extend_from_slice(&due_bits(next).to_be_bytes()),
        None => return partition_upper_bound(partition),
    }
    k
}

/// Where a scan of `partition`'s timers starts: its first key, or just after the
/// timer `after`.
pub fn timer_scan_start(partition: Partition, after: Option<(Millis, &str)>) -> Vec<u8> {
    match after {
        Some((due, lead)) => {
            let mut k = timer_key(partition, due, lead);
            k.push(0);
            k
        }
        None => partition_prefix(partition),
    }
}

/// The first key of `partition`.
pub fn partition_prefix(partition: Partition) -> Vec<u8> {
    partition.to_be_bytes().to_vec()
}

/// The first key after every key of `partition`.
pub fn partition_upper_bound(partition: Partition) -> Vec<u8> {
    match partition.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xff; 5],
    }
}

/// Splits a timer key into `(partition, due, lead)`.
pub fn parse_timer_key(key: &[u8]) -> Option<(Partition, Millis, &str)> {
    let partition = Partition::from_be_bytes(key.get(..4)?.try_into().ok()?);
    let due = due_from_bits(u64::from_be_bytes(key.get(4..12)?.try_into().ok()?));
    let lead = std::str::from_utf8(key.get(12..)?).ok()?;
    Some((partition, due, lead))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn byte_order_is_due_order(a in proptest::num::i64::ANY, b in proptest::num::i64::ANY) {
            prop_assert_eq!(timer_key(1, a, "L").cmp(&timer_key(1, b, "L")), a.cmp(&b));
            let key = timer_key(7, a, "L-1");
            prop_assert_eq!(parse_timer_key(&key), Some((7, a, "L-1")));
        }

        #[test]
        fn upper_bound_splits_due_from_not_due(due in -1_000i64..1_000, up_to in -1_000i64..1_000) {
            let key = timer_key(3, due, "L");
            prop_assert_eq!(key < timer_upper_bound(3, up_to), due <= up_to);
            prop_assert!(key < partition_upper_bound(3) && key >= partition_prefix(3));
        }
    }
}
