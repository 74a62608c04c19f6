#![no_main]
//! Properties: `driftwatch::tools::fuzz::scrub`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| driftwatch::tools::fuzz::scrub(data));
