//! cargo-fuzz entry point of leadscore_fuzz::avro (see that crate's docs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| leadscore_fuzz::avro(data));
