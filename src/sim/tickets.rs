//! Download tickets: `hex(expiry_ms || HMAC-SHA-256(secret, serial, kind, expiry)[..24])`.
//! Unforgeable without the per-simulator secret, and they carry their own expiry.

use sha2::{Digest, Sha256};

use super::content::MediaKind;

/// Why a ticket is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TicketError {
    /// Not a ticket this simulator issued for this file.
    #[error("invalid ticket")]
    Forged,
    /// Issued, but its time is up.
    #[error("ticket expired")]
    Expired,
}

pub(crate) struct TicketSigner {
    secret: [u8; 32],
}

impl TicketSigner {
    pub(crate) fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// A ticket for `kind` of recording `serial`, valid until `expiry_ms` (Unix ms).
    pub(crate) fn issue(&self, serial: u64, kind: MediaKind, expiry_ms: i64) -> String {
        let mut raw = expiry_ms.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.mac(serial, kind, expiry_ms)[..24]);
        hex::encode(raw)
    }

    /// Checks a ticket at `now_ms`.
    pub(crate) fn verify(&self, ticket: &str, serial: u64, kind: MediaKind, now_ms: i64) -> Result<(), TicketError> {
        let raw = hex::decode(ticket).map_err(|_| TicketError::Forged)?;
        if raw.len() != 32 {
            return Err(TicketError::Forged);
        }
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&raw[..8]);
        let expiry_ms = i64::from_be_bytes(expiry);
        let mac = self.mac(serial, kind, expiry_ms);
        // Constant-time enough for a simulator: compare every byte.
        let same = raw[8..].iter().zip(&mac[..24]).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            return Err(TicketError::Forged);
        }
        if now_ms >= expiry_ms {
            return Err(TicketError::Expired);
        }
        Ok(())
    }

    fn mac(&self, serial: u64, kind: MediaKind, expiry_ms: i64) -> [u8; 32] {
        let mut message = Vec::with_capacity(32);
        message.extend_from_slice(&serial.to_be_bytes());
        message.extend_from_slice(kind.as_str().as_bytes());
        message.push(0);
        message.extend_from_slice(&expiry_ms.to_be_bytes());
        hmac_sha256(&self.secret, &message)
    }
}

/// HMAC-SHA-256 (RFC 2104) for a key of at most one block.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new().chain_update(ipad).chain_update(message).finalize();
    let outer = Sha256::new().chain_update(opad).chain_update(inner).finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_verify_expire_and_resist_forgery() {
        let signer = TicketSigner::new([7; 32]);
        let t = signer.issue(42, MediaKind::Recording, 1_000);
        assert_eq!(signer.verify(&t, 42, MediaKind::Recording, 999), Ok(()));
        assert_eq!(signer.verify(&t, 42, MediaKind::Recording, 1_000), Err(TicketError::Expired));
        assert_eq!(signer.verify(&t, 43, MediaKind::Recording, 0), Err(TicketError::Forged));
        assert_eq!(signer.verify(&t, 42, MediaKind::Audio, 0), Err(TicketError::Forged));
        // Pushing the expiry forward breaks the MAC.
        let forged = format!("{}{}", hex::encode(9_999i64.to_be_bytes()), &t[16..]);
        assert_eq!(signer.verify(&forged, 42, MediaKind::Recording, 0), Err(TicketError::Forged));
        assert!(TicketSigner::new([8; 32]).verify(&t, 42, MediaKind::Recording, 0).is_err());
    }
}
