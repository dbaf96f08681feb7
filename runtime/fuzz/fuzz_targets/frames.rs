//! The frame reader and envelope parsers on arbitrary bytes (`alknet::fuzzing::frames`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| alknet::fuzzing::frames(data));
