//! webex-archiver keeps a complete, verifiable archive of an organisation's Webex
//! meeting recordings in S3-compatible storage.
//!
//! `main.rs` only wires; every command is a library function here that takes its
//! dependencies and a cancellation token, so tests drive the same code.

pub mod app;
pub mod archive;
pub mod cli;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod domain;
pub mod errors;
pub mod manifest;
pub mod metrics;
pub mod progress;
pub mod report;
pub mod retention;
pub mod server;
pub mod shutdown;
pub mod sim;
pub mod state;
pub mod storage;
pub mod supervise;
pub mod telemetry;
pub mod time;
pub mod verify;
pub mod webex;
