#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| promised_fuzz::network_file(data));
