//! The hash of an event id, so that a redelivered event changes nothing.
//!
//! A lead keeps its recent ids as these 64-bit hashes, in a ring of
//! configurable size (the model's `remember_event_ids`, in
//! [`crate::cells::Cells`]). The hash is written out here, not taken from `std`,
//! because it is persisted with the state and must never change between builds.

/// FNV-1a over the bytes, then a SplitMix64 finaliser to spread the bits.
pub fn id_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable() {
        // Persisted: changing the function would make old states forget their ids.
        assert_eq!(id_hash(""), id_hash(""));
        assert_ne!(id_hash("e-1"), id_hash("e-2"));
        // Value computed independently (FNV-1a 64 + SplitMix64 finaliser in Python).
        assert_eq!(id_hash("e-000123"), 365_599_254_631_256_698);
    }
}
