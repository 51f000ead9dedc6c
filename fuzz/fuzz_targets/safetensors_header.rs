//! Any bytes: the safetensors header and index validators never panic.
#![no_main]
use candor_verify::formats::safetensors::{SafetensorsHeader, SafetensorsIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SafetensorsHeader::read(data);
    let _ = SafetensorsIndex::parse(data);
});
