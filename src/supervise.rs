//! Panics are bugs, but a bug in one recording's attempt or one scope's pass must not
//! take the daemon down or strand a lease: the long-running loops catch a panic at the
//! boundary of one unit of work, log its message, give the unit's claim back, count it,
//! and go on.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt as _;

/// A hook the long-running loops call at the start of each unit of work with its name
/// (a recording id, a scope). For tests that must make a unit of work panic; `None` in
/// production.
#[doc(hidden)]
#[derive(Clone)]
pub struct TestHook(pub Arc<dyn Fn(&str) + Send + Sync>);

impl TestHook {
    /// Calls the hook.
    pub fn call(&self, unit: &str) {
        (self.0)(unit);
    }
}

impl std::fmt::Debug for TestHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestHook")
    }
}

/// Runs `future`, turning a panic into its message.
pub async fn catch_panic<F: Future>(future: F) -> Result<F::Output, String> {
    AssertUnwindSafe(future).catch_unwind().await.map_err(|payload| panic_message(payload.as_ref()))
}

/// The message of a panic payload (`panic!("...")` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_its_message() {
        assert_eq!(catch_panic(async { 7 }).await, Ok(7));
        let caught = catch_panic(async { panic!("boom {}", 42) }).await;
        assert_eq!(caught, Err::<(), _>("boom 42".to_owned()));
        let caught = catch_panic(async { std::panic::panic_any(5u8) }).await;
        assert_eq!(caught, Err::<(), _>("a panic without a message".to_owned()));
    }
}
