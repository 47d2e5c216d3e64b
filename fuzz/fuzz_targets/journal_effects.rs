#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| promised_fuzz::journal_effects(data));
