//! urlcap: run untrusted WebAssembly whose only way to the network is HTTP through URL
//! capabilities ("preopened authorities").
//!
//! Layers, top to bottom (each depends only on those below it):
//! - [`cli`]: the `urlcap` command.
//! - [`manifest`]: the TOML capability manifest and `--allow` flags, into grants.
//! - [`policy`]: the pure decision engine (no I/O).
//! - [`audit`]: one JSON line per event, never dropped silently.
#![deny(unsafe_code)]

pub mod audit;
pub mod cli;
pub mod egress;
pub mod fuzz;
pub mod host;
pub mod manifest;
pub mod outbound;
pub mod policy;
pub mod sandbox;
pub mod secret;

pub use sandbox::{Guest, Sandbox};

/// The README's Rust examples, compiled and run as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
