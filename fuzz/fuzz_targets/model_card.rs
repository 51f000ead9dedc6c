//! Any bytes: model-card front matter parsing is bounded and never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = candor_verify::model_card::parse(data);
});
