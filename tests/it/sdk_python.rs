//! The Python guest SDK (sdk/python): a guest built with it by componentize-py
//! (fixtures/pysdk, built by ./scripts/test) lists, fetches, is denied with the audit's reason,
//! derives, revokes and runs a plugin nested, checked at a recording loopback origin and in
//! the audit log (scenarios in support/sdk.rs). Without the toolchain this fails; it never skips.

use crate::support;

use support::sdk::{self, Sdk};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_lists_fetches_and_is_denied_with_the_audit_reason() {
    sdk::lists_fetches_and_is_denied(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_derives_narrower_is_refused_wider_and_revokes() {
    sdk::derives_and_revokes(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_runs_a_plugin_with_an_attenuated_handle() {
    sdk::runs_a_plugin_with_an_attenuated_handle(Sdk::Python).await;
}
