//! Printing errors: an error's own message says what failed, its `source()` chain says
//! why, and [`ErrorChain`] prints both, each message once. A leaf: every layer reports
//! errors with it.

use std::error::Error;
use std::fmt;

/// An error and its causes on one line, each message once: `what failed: why: root cause`.
///
/// Our error enums follow one rule: a variant with a `#[source]` does not repeat the
/// source in its own message, so the chain is where the whole story is told: in logs
/// (`error = %ErrorChain(&e)`), in failure messages stored in the database, and in what
/// a command prints. Some crates' errors (object_store's, serde's wrappers) do repeat
/// their source in their message: a cause whose text was already printed is skipped.
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !shown.contains(&text) {
                if shown.is_empty() {
                    f.write_str(&text)?;
                } else {
                    write!(f, ": {text}")?;
                }
                shown.push_str(&text);
            }
            next = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle says: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn every_cause_is_printed_once() {
        let e = Outer(Middle(std::io::Error::other("disk full")));
        // `Middle` repeats its source (as some crates' errors do): printed once.
        assert_eq!(ErrorChain(&e).to_string(), "outer: middle says: disk full");
        let plain = std::io::Error::other("alone");
        assert_eq!(ErrorChain(&plain).to_string(), "alone");
    }
}
