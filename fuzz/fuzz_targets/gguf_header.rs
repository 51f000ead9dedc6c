//! Any bytes: the GGUF header validator returns Ok or a typed error, never panics or over-allocates.
#![no_main]
use candor_verify::formats::gguf::GgufHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = GgufHeader::read(data);
});
