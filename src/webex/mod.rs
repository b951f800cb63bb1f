//! The Webex API: wire types, the client (Retry-After gate, tokens, retries), errors.

pub mod auth;
pub mod client;
mod error;
pub mod gate;
pub mod hosts;
pub mod models;

pub use client::{ListPage, Listing, WebexClient};
pub use error::{TokenError, WebexError, parse_retry_after};
