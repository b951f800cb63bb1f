//! Archiving: claim a due recording, fetch its links, stream each file into the store
//! while hashing, write `metadata.json`, and only then mark it archived.

mod key;

pub use key::{KeyInputs, KeyTemplate};
