//! The bytes JSON treats specially inside a string: the quote, the backslash
//! and the control characters. Both the event scanner (which leaves strings
//! holding them to serde_json) and the record encoder (which escapes them)
//! look for them, eight bytes at a time.

/// Whether a byte ends or escapes a JSON string, or must be escaped in one.
pub(crate) fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// The index of the first special byte of `bytes` at or after `from`, or
/// the length of `bytes` if there is none.
pub(crate) fn first_special(bytes: &[u8], mut from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = bytes.get(from..from + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let (quote, backslash) = (x ^ (ONES * u64::from(b'"')), x ^ (ONES * u64::from(b'\\')));
        // A byte below 0x20, or equal to either, sets its high bit here;
        // borrows can flag bytes above a real one, never below it.
        let found = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | x.wrapping_sub(ONES * 0x20) & !x)
            & HIGH;
        if found != 0 {
            return from + found.trailing_zeros() as usize / 8;
        }
        from += 8;
    }
    from + bytes[from..].iter().position(|&b| is_special(b)).unwrap_or(bytes.len() - from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn finds_the_first_special_byte(
            bytes in prop::collection::vec(
                prop_oneof![any::<u8>(), Just(b'"'), Just(b'\\'), Just(0x1f), Just(0x20), Just(b'a')],
                0..40,
            ),
            from in 0usize..40,
        ) {
            let from = from.min(bytes.len());
            let expected = bytes[from..].iter().position(|&b| is_special(b)).map_or(bytes.len(), |i| from + i);
            prop_assert_eq!(first_special(&bytes, from), expected);
        }
    }
}
