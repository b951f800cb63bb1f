//! The Webex API: wire types, and (later) the client.

pub mod models;
