//! `urlcap::fuzz::guest_request` under libFuzzer: see fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = urlcap::fuzz::guest_request(data);
});
