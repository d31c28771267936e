//! Builds the guests in fixtures/guests for wasm32-wasip2, installing that target with rustup if
//! it is missing: the demo guest and the demo handler, which the `urlcap` binary embeds, always; the test and bench
//! fixtures with the `fixtures` feature (on by default, so `cargo test` has them). Their paths
//! reach the package as URLCAP_GUEST_<NAME> environment variables. The library
//! (crates/urlcap) has no build script: an embedder builds nothing but Rust.

use std::path::PathBuf;
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
/// Built always: the demo guest, and the handler `urlcap demo --serve` serves.
const DEMO: &[&str] = &["demo", "handler"];
/// Built with the `fixtures` feature.
const FIXTURES: &[&str] = &["probe", "hello", "fetch1", "whttp", "whandler"];

fn main() {
    let mut guests = DEMO.to_vec();
    if std::env::var_os("CARGO_FEATURE_FIXTURES").is_some() {
        guests.extend_from_slice(FIXTURES);
    }
    for path in [
        "fixtures/guests/Cargo.toml",
        "fixtures/guests/Cargo.lock",
        "sdk/rust",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    for guest in &guests {
        println!("cargo:rerun-if-changed=fixtures/guests/{guest}");
    }
    ensure_target();
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = out_dir.join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            TARGET,
            "--manifest-path",
        ])
        .arg(manifest_dir.join("fixtures/guests/Cargo.toml"))
        .args(guests.iter().flat_map(|g| ["-p", g]))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cannot run cargo to build the wasm guests");
    if !status.success() {
        panic!("building the wasm guests in fixtures/guests for {TARGET} failed (see the output above)");
    }
    for guest in &guests {
        let wasm = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{guest}.wasm"));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        println!(
            "cargo:rustc-env=URLCAP_GUEST_{}={}",
            guest.to_uppercase(),
            wasm.display()
        );
    }
}

/// Install the wasm32-wasip2 target for this toolchain if it is missing.
fn ensure_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == TARGET) => {}
        Ok(_) => {
            let ok = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                panic!("the {TARGET} target is missing and `rustup target add {TARGET}` failed");
            }
        }
        Err(e) => println!(
            "cargo:warning=rustup not found ({e}); assuming the {TARGET} target is installed"
        ),
    }
}
