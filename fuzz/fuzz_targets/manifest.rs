//! `urlcap::fuzz::manifest` under libFuzzer: see fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = urlcap::fuzz::manifest(data);
});
