//! Builds the guests (fixtures/guests: the demo guest embedded in the binary, and the test
//! fixtures) for wasm32-wasip2, installing that target with rustup if it is missing. Their
//! paths reach the crate as URLCAP_GUEST_<NAME> environment variables.

use std::path::PathBuf;
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const GUESTS: &[&str] = &["demo", "probe", "hello", "fetch1", "whttp"];

fn main() {
    for path in [
        "fixtures/guests/Cargo.toml",
        "fixtures/guests/Cargo.lock",
        "sdk/rust",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    for guest in GUESTS {
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
    for guest in GUESTS {
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
