//! urlcap: run untrusted WebAssembly whose only way to the network is HTTP through URL
//! capabilities ("preopened authorities").
//!
//! This crate is the library: it builds no guest and no command line (those live in the
//! `urlcap-cli` package at the repository root). Start at [`Sandbox::builder`].
//!
//! Layers, top to bottom (each depends only on those below it):
//! - [`sandbox`]: one launch path, config to running guest.
//! - [`host`]: the wasmtime host: engines, sandboxes, limits, both guest APIs.
//! - [`outbound`]: the one choke point every request passes.
//! - [`egress`]: the vetted HTTP client (resolve, vet IPs, pinned connect, TLS, idle-connection reuse).
//! - [`manifest`]: the TOML capability manifest and `--allow` flags, into grants.
//! - [`policy`]: the pure decision engine (no I/O).
//! - [`audit`]: one JSON line per event, never dropped silently.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
pub mod egress;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod host;
pub mod learn;
pub mod manifest;
pub mod outbound;
pub mod policy;
pub mod sandbox;
pub mod secret;
pub mod serve;

pub use sandbox::{Guest, Sandbox};

/// The README's Rust examples, compiled and run as doctests so they cannot rot.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
