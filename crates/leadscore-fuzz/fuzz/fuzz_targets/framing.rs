//! cargo-fuzz entry point of leadscore_fuzz::framing (see that crate's docs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| leadscore_fuzz::framing(data));
