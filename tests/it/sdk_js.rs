//! The JavaScript guest SDK (sdk/js): a guest built with it by componentize-js
//! (fixtures/jssdk, built by ./scripts/test) lists, fetches, is denied with the audit's reason,
//! derives, revokes and runs a plugin nested, checked at a recording loopback origin and in
//! the audit log (scenarios in support/sdk.rs). Without the toolchain this fails; it never skips.

use crate::support;

use support::sdk::{self, Sdk};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_sdk_lists_fetches_and_is_denied_with_the_audit_reason() {
    sdk::lists_fetches_and_is_denied(Sdk::JavaScript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_sdk_derives_narrower_is_refused_wider_and_revokes() {
    sdk::derives_and_revokes(Sdk::JavaScript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_sdk_runs_a_plugin_with_an_attenuated_handle() {
    sdk::runs_a_plugin_with_an_attenuated_handle(Sdk::JavaScript).await;
}

/// sdk/js/index.d.ts is valid TypeScript, README's JavaScript example type-checks against it
/// (strict), and a call it does not declare is an error.
#[test]
fn js_sdk_declarations_type_check_the_readme_example() {
    let toolchain = sdk::built_dir(
        "URLCAP_JS_TOOLCHAIN",
        "target/js-toolchain (npm ci of fixtures/js-toolchain)",
    );
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = readme
        .split("```js\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README has a ```js example");
    let sdk_import = "'./sdk/js/index.js'";
    assert!(example.contains(sdk_import), "{example}");
    let example = example.replace(sdk_import, &format!("'{root}/sdk/js/index.js'"));
    let check = |extra: &str| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("example.ts");
        std::fs::write(&file, format!("{example}\n{extra}\n")).unwrap();
        let o = std::process::Command::new(format!("{toolchain}/node_modules/.bin/tsc"))
            .args([
                "--noEmit", "--strict", "--target", "es2022", "--module", "es2022",
            ])
            .args(["--moduleResolution", "bundler", "--lib", "es2022,dom"])
            .arg(&file)
            .output()
            .unwrap();
        (
            o.status.success(),
            support::text(&o.stdout) + &support::text(&o.stderr),
        )
    };
    let (ok, out) = check("");
    assert!(ok, "{out}");
    let (ok, out) = check("urlcap.authority('api').fetchAll('/v1/');");
    assert!(!ok && out.contains("fetchAll"), "{out}");
}
