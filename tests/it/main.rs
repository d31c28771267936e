//! The integration suite, as one test binary: each module is one area (its own docs say what it
//! proves). One binary links wasmtime once instead of once per file, so the suite builds faster
//! and takes a fraction of the disk. `tests/egress_env.rs` stays a binary of its own because it
//! changes the process environment.

mod support;

mod abuse;
mod audit_load;
mod cli;
mod cli_run;
mod confinement;
mod derive_props;
mod docs;
mod egress;
mod egress_vectors;
mod faults;
mod host;
mod host_work;
mod learn;
mod manifest_errors;
mod nested;
mod policy_engine;
mod robustness;
mod sdk_js;
mod sdk_python;
mod serve;
mod wasi_http;
mod wasi_http_conformance;
mod wasi_http_js;
mod wasi_http_python;
mod whatwg_urls;
