//! Any text: the strict manifest parser returns a manifest or an error naming the line.
#![no_main]
use candor_verify::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Manifest::parse(text, "fuzz", std::path::Path::new("fuzz.toml"));
    }
});
