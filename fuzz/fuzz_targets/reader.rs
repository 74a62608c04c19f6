#![no_main]
//! Properties: `driftwatch::tools::fuzz::reader`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| driftwatch::tools::fuzz::reader(data));
