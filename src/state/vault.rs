//! OAuth tokens at rest. With `database.token_key` set, the access and refresh tokens
//! are stored encrypted with AES-256-GCM: `v1:` and the base64 of a random 96-bit nonce,
//! the ciphertext and the tag. The associated data binds each value to its client id and
//! its field, so a value copied to another row or column does not decrypt.
//!
//! Rows written before the key was set hold plain text (no `v1:`): they are read as
//! they are and stored encrypted at the next refresh. (They are not rewritten on read:
//! a write outside the refresh lock could put an older chain over a newer one.)

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::ExposeSecret;

use super::{State, StoredTokens};
use crate::config::TokenKey;
use crate::webex::StoreError;
use crate::webex::auth::TokenStore;

/// Marks an encrypted value, and its format.
const SEALED_PREFIX: &str = "v1:";
/// Length of the GCM tag.
const TAG_LEN: usize = 16;

/// Why stored tokens cannot be read or written. Never contains a token.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Decryption failed: another key encrypted the tokens, or they were altered.
    #[error(
        "the stored OAuth {field} token cannot be decrypted with database.token_key: it was stored with \
         another key (or altered); set database.token_key to the key it was stored with, or re-authorise \
         the integration with a new webex.oauth.refresh_token"
    )]
    WrongKey {
        /// `access` or `refresh`.
        field: &'static str,
    },
    /// The tokens are encrypted and no key is configured.
    #[error(
        "the stored OAuth {field} token is encrypted but database.token_key is not set: set database.token_key \
         (or database.token_key_file) to the key it was stored with"
    )]
    NoKey {
        /// `access` or `refresh`.
        field: &'static str,
    },
    /// The value has the encrypted form but cannot be one.
    #[error("the stored OAuth {field} token is damaged: {problem}")]
    Damaged {
        /// `access` or `refresh`.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The configured key cannot be used.
    #[error("database.token_key cannot be used as an AES-256 key")]
    BadKey,
    /// The system's random generator or the cipher failed.
    #[error("cannot encrypt the OAuth {field} token with database.token_key")]
    Encrypt {
        /// `access` or `refresh`.
        field: &'static str,
    },
}

/// The state's [`TokenStore`]: the state store, with the tokens encrypted when a key is
/// configured.
pub struct TokenVault {
    state: State,
    cipher: Option<Cipher>,
}

impl fmt::Debug for TokenVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVault").field("encrypted", &self.cipher.is_some()).finish()
    }
}

impl TokenVault {
    /// Tokens kept in `state`, encrypted with `key` when there is one.
    pub fn new(state: State, key: Option<&TokenKey>) -> Result<Self, VaultError> {
        Ok(Self { state, cipher: key.map(Cipher::new).transpose()? })
    }

    /// Shared, as the Webex client takes it.
    pub fn shared(state: State, key: Option<&TokenKey>) -> Result<Arc<dyn TokenStore>, VaultError> {
        Ok(Arc::new(Self::new(state, key)?))
    }
}

/// AES-256-GCM with `database.token_key`.
struct Cipher {
    key: LessSafeKey,
    random: SystemRandom,
}

impl Cipher {
    fn new(key: &TokenKey) -> Result<Self, VaultError> {
        let bytes: &[u8; 32] = key.expose().expose_secret();
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| VaultError::BadKey)?;
        Ok(Self { key: LessSafeKey::new(unbound), random: SystemRandom::new() })
    }
}

/// The value to store: encrypted when there is a cipher.
fn seal(cipher: Option<&Cipher>, client_id: &str, field: &'static str, value: &str) -> Result<String, VaultError> {
    let Some(cipher) = cipher else { return Ok(value.to_owned()) };
    let mut nonce = [0u8; NONCE_LEN];
    cipher.random.fill(&mut nonce).map_err(|_| VaultError::Encrypt { field })?;
    let mut sealed = value.as_bytes().to_vec();
    cipher
        .key
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(associated_data(client_id, field).as_bytes()),
            &mut sealed,
        )
        .map_err(|_| VaultError::Encrypt { field })?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(format!("{SEALED_PREFIX}{}", BASE64.encode(out)))
}

/// The token a stored value holds.
fn open(cipher: Option<&Cipher>, client_id: &str, field: &'static str, stored: &str) -> Result<String, VaultError> {
    let Some(encoded) = stored.strip_prefix(SEALED_PREFIX) else {
        // Written before database.token_key was set: plain text.
        return Ok(stored.to_owned());
    };
    let Some(cipher) = cipher else { return Err(VaultError::NoKey { field }) };
    let mut bytes =
        BASE64.decode(encoded).map_err(|_| VaultError::Damaged { field, problem: "not base64 after \"v1:\"" })?;
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return Err(VaultError::Damaged { field, problem: "too short to hold a nonce and a tag" });
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[..NONCE_LEN]);
    let plain = cipher
        .key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(associated_data(client_id, field).as_bytes()),
            &mut bytes[NONCE_LEN..],
        )
        .map_err(|_| VaultError::WrongKey { field })?;
    String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Damaged { field, problem: "not UTF-8 once decrypted" })
}

fn associated_data(client_id: &str, field: &str) -> String {
    format!("webex-archiver oauth_tokens {field}_token client_id={client_id}")
}

#[async_trait]
impl TokenStore for TokenVault {
    async fn load_tokens(&self, client_id: &str) -> Result<Option<StoredTokens>, StoreError> {
        let Some(mut tokens) = self.state.load_tokens(client_id).await? else { return Ok(None) };
        let cipher = self.cipher.as_ref();
        tokens.refresh_token = open(cipher, client_id, "refresh", &tokens.refresh_token)?;
        tokens.access_token = tokens.access_token.map(|a| open(cipher, client_id, "access", &a)).transpose()?;
        Ok(Some(tokens))
    }

    async fn store_tokens(&self, client_id: &str, tokens: &StoredTokens) -> Result<(), StoreError> {
        let mut sealed = tokens.clone();
        let cipher = self.cipher.as_ref();
        sealed.refresh_token = seal(cipher, client_id, "refresh", &tokens.refresh_token)?;
        sealed.access_token =
            tokens.access_token.as_deref().map(|a| seal(cipher, client_id, "access", a)).transpose()?;
        Ok(self.state.store_tokens(client_id, &sealed).await?)
    }

    async fn lock_refresh(&self, client_id: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.state.lock_refresh(client_id, owner, ttl).await?)
    }

    async fn unlock_refresh(&self, client_id: &str, owner: &str) -> Result<(), StoreError> {
        Ok(self.state.unlock_refresh(client_id, owner).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(byte: u8) -> Cipher {
        Cipher::new(&TokenKey::from_bytes([byte; 32])).unwrap()
    }

    #[test]
    fn sealed_values_round_trip_and_differ_each_time() {
        let c = cipher(7);
        let a = seal(Some(&c), "cid", "refresh", "RT-secret").unwrap();
        let b = seal(Some(&c), "cid", "refresh", "RT-secret").unwrap();
        assert!(a.starts_with("v1:") && !a.contains("RT-secret"));
        assert_ne!(a, b, "a fresh nonce per value");
        assert_eq!(open(Some(&c), "cid", "refresh", &a).unwrap(), "RT-secret");
        assert_eq!(open(Some(&c), "cid", "refresh", &b).unwrap(), "RT-secret");
    }

    #[test]
    fn a_wrong_key_another_client_or_field_or_damage_is_a_clear_error() {
        let c = cipher(1);
        let sealed = seal(Some(&c), "cid", "refresh", "RT-secret").unwrap();
        let wrong = open(Some(&cipher(2)), "cid", "refresh", &sealed).unwrap_err();
        assert!(matches!(wrong, VaultError::WrongKey { .. }));
        assert!(wrong.to_string().contains("database.token_key"), "{wrong}");
        assert!(!wrong.to_string().contains("RT-secret"));
        assert!(matches!(open(Some(&c), "other", "refresh", &sealed), Err(VaultError::WrongKey { .. })));
        assert!(matches!(open(Some(&c), "cid", "access", &sealed), Err(VaultError::WrongKey { .. })));
        assert!(matches!(open(Some(&c), "cid", "refresh", "v1:!!"), Err(VaultError::Damaged { .. })));
        assert!(matches!(open(Some(&c), "cid", "refresh", "v1:AAAA"), Err(VaultError::Damaged { .. })));
        let missing = open(None, "cid", "refresh", &sealed).unwrap_err();
        assert!(matches!(missing, VaultError::NoKey { .. }));
        assert!(missing.to_string().contains("database.token_key"));
        // Plain text written before the key was set reads as it is.
        assert_eq!(open(Some(&c), "cid", "refresh", "RT-plain").unwrap(), "RT-plain");
        assert_eq!(seal(None, "cid", "refresh", "RT").unwrap(), "RT");
    }

    proptest::proptest! {
        #[test]
        fn any_stored_value_is_read_without_panicking(value in "\\PC{0,80}") {
            let c = cipher(3);
            let _ = open(Some(&c), "cid", "access", &value);
            let _ = open(Some(&c), "cid", "access", &format!("v1:{value}"));
        }
    }
}
