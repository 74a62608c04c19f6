#![no_main]
//! Properties: `driftwatch::tools::fuzz::inventory`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| driftwatch::tools::fuzz::inventory(data));
