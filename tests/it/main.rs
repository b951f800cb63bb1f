//! Integration tests: one binary, shared helpers, real Postgres, real S3 servers, and
//! the project's Webex simulator. Run them through `scripts/test` (README).

mod commands;
mod config;
mod custody;
mod deletions;
mod discovery;
mod errors;
mod helpers;
mod hostile;
mod integrity;
mod manifests;
mod oauth;
mod object_lock;
mod ops;
mod plans;
mod proxy;
mod report;
mod sim;
mod state_contract;
mod storage;
mod sync;
