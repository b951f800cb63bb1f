//! The Webex API: wire types, the client (Retry-After gate, tokens, retries), errors.
//!
//! The client knows no database: what it shares with other replicas (the Retry-After
//! pause, the OAuth tokens) goes through the small traits [`gate::SharedPause`] and
//! [`auth::TokenStore`], which the state store implements and the application wires in.

pub mod auth;
pub mod client;
mod error;
pub mod gate;
pub mod hosts;
pub mod models;

pub use client::{ListPage, Listing, WebexClient};
pub use error::{TokenError, WebexError, parse_retry_after};

/// The error of a store the client is given ([`gate::SharedPause`], [`auth::TokenStore`]):
/// the client only reports it (its message and cause chain), so any error will do.
pub type StoreError = Box<dyn std::error::Error + Send + Sync + 'static>;
