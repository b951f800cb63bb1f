//! Every error enum of the project follows one rule: a variant with a source does not
//! repeat it in its own message; `ErrorChain` prints the whole chain, each message once.

use std::error::Error;

use webex_archiver::errors::ErrorChain;

#[test]
fn our_errors_leave_their_source_to_the_chain() {
    use webex_archiver::archive::AttemptError;
    use webex_archiver::discovery::DiscoveryError;
    use webex_archiver::state::StateError;
    use webex_archiver::storage::StorageError;
    use webex_archiver::webex::{TokenError, WebexError};

    let json = || serde_json::from_str::<u8>("x").expect_err("not a number");
    let store = || object_store::Error::NotSupported { source: "the disk is full".into() };
    let errors: Vec<Box<dyn Error>> = vec![
        Box::new(StateError::Database(sqlx::Error::PoolTimedOut)),
        Box::new(StateError::StoredJson(json())),
        Box::new(StorageError::Store { operation: "put", key: "s3://b/k".into(), source: store() }),
        Box::new(WebexError::Token(TokenError::Unreadable(json()))),
        Box::new(WebexError::Token(TokenError::store(
            "cannot store the refreshed tokens",
            StateError::Corrupt("x".into()),
        ))),
        Box::new(DiscoveryError::State(StateError::Database(sqlx::Error::PoolTimedOut))),
        Box::new(DiscoveryError::Sites(WebexError::Token(TokenError::Unreadable(json())))),
        Box::new(AttemptError::Database(StateError::Database(sqlx::Error::PoolTimedOut))),
        Box::new(AttemptError::StoreUnreachable(StorageError::Store {
            operation: "probe",
            key: "s3://b".into(),
            source: store(),
        })),
        Box::new(AttemptError::transient(
            "storage",
            StorageError::Store { operation: "put", key: "s3://b/k".into(), source: store() },
        )),
    ];
    for e in &errors {
        let own = e.to_string();
        let source = e.source().map(ToString::to_string).unwrap_or_else(|| panic!("{own:?} has no source"));
        assert!(!own.contains(&source), "{own:?} repeats its source {source:?}");
        let chain = ErrorChain(e.as_ref()).to_string();
        assert!(chain.starts_with(&format!("{own}: {source}")), "{chain:?}");
    }
    let e = &errors[2];
    assert_eq!(
        ErrorChain(e.as_ref()).to_string(),
        "s3://b/k: put failed: Operation not supported: the disk is full",
        "a cause printed by its wrapper is not printed again"
    );
}
