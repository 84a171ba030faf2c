//! The cryptographic half of sessions: tokens, the record id derived from a token, and the
//! AES-256-GCM sealing of a record's data under a key derived from `session.secret`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::COOKIE;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::SessionError;
use crate::secrets::Secret;

const TOKEN_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;
const HKDF_SALT: &[u8] = b"keel/session/v1";
const HKDF_INFO: &[u8] = b"sessions collection AES-256-GCM";
const HKDF_USER_KEY_INFO: &[u8] = b"sessions collection user key";

/// What is encrypted inside a record.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionData {
    pub(super) user_id: String,
    pub(super) created_at_ms: i64,
}

/// AES-256-GCM under the key derived from `session.secret`; the record id is associated data.
/// Also the keyed hash that finds a user's sessions without storing the user id readably.
pub(crate) struct SessionCipher(Aes256Gcm, [u8; 32]);

impl SessionCipher {
    pub(crate) fn new(secret: &Secret) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(HKDF_SALT), secret.expose().as_bytes());
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
        hk.expand(HKDF_INFO, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let cipher = Aes256Gcm::new(&key.into());
        key.fill(0);
        let mut user_key = [0u8; 32];
        hk.expand(HKDF_USER_KEY_INFO, &mut user_key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self(cipher, user_key)
    }

    /// HMAC-SHA256 of the user id under a key derived from the secret (HKDF-Extract is
    /// HMAC): stored beside each record so "log out everywhere" can find them.
    pub(super) fn user_key(&self, user_id: &str) -> String {
        let (mac, _) = hkdf::Hkdf::<Sha256>::extract(Some(&self.1), user_id.as_bytes());
        crate::store::lower_hex(&mac)
    }

    pub(super) fn seal(&self, record_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, SessionError> {
        let nonce_bytes: [u8; NONCE_BYTES] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let ciphertext = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: record_id.as_bytes(),
                },
            )
            .map_err(|_| SessionError::Crypto)?;
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    pub(crate) fn open(&self, record_id: &str, sealed: &[u8]) -> Option<SessionData> {
        if sealed.len() <= NONCE_BYTES {
            return None;
        }
        let (nonce_bytes, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce = Nonce::try_from(nonce_bytes).ok()?;
        let plaintext = self
            .0
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: record_id.as_bytes(),
                },
            )
            .ok()?;
        serde_json::from_slice(&plaintext).ok()
    }
}

pub(super) fn new_token() -> String {
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The well-formed `sessionId` token of a request, if any. Anything not shaped like one of our
/// tokens is ignored before it costs a store lookup.
pub(crate) fn session_tokens(headers: &HeaderMap, cookie_name: &str) -> Vec<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == cookie_name)
        .map(|(_, value)| value.trim())
        .filter(|t| {
            t.len() == 43
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .take(MAX_SESSION_COOKIES)
        .map(str::to_owned)
        .collect()
}

/// Well-formed session cookies of one name tried per request at most (each may cost a store
/// read): a stale cookie left at another path, a subdomain's, and the current one.
pub(super) const MAX_SESSION_COOKIES: usize = 3;

/// The lowercase hex SHA-256 of a token.
pub(super) fn record_id(token: &str) -> String {
    crate::store::lower_hex(&Sha256::digest(token.as_bytes()))
}
