//! Fuzzes the digest, key prefix, label and name selector parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::parse_keys(data));
