use http::header::COOKIE;

use super::crypto::*;
use super::*;

fn cipher(secret: &str) -> SessionCipher {
    SessionCipher::new(&Secret::new(secret))
}

fn data() -> SessionData {
    SessionData {
        user_id: "665f1f77bcf86cd799439011".into(),
        created_at_ms: 1,
    }
}

#[test]
fn sealed_data_round_trips_and_is_not_plaintext() {
    let c = cipher("a-long-enough-session-secret-for-tests");
    let plaintext = serde_json::to_vec(&data()).unwrap();
    let sealed = c.seal("rec", &plaintext).unwrap();
    assert!(!sealed.windows(8).any(|w| w == b"665f1f77"));
    assert_eq!(c.open("rec", &sealed).unwrap().user_id, data().user_id);
}

#[test]
fn tampering_moving_or_rekeying_fails_authentication() {
    let c = cipher("a-long-enough-session-secret-for-tests");
    let sealed = c
        .seal("rec", &serde_json::to_vec(&data()).unwrap())
        .unwrap();
    let mut flipped = sealed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(c.open("rec", &flipped).is_none(), "tampered ciphertext");
    assert!(
        c.open("other-record", &sealed).is_none(),
        "ciphertext moved to another record"
    );
    assert!(
        cipher("another-secret-entirely-different")
            .open("rec", &sealed)
            .is_none()
    );
    assert!(c.open("rec", &sealed[..5]).is_none(), "truncated");
}

#[test]
fn each_seal_uses_a_fresh_nonce() {
    let c = cipher("a-long-enough-session-secret-for-tests");
    let p = serde_json::to_vec(&data()).unwrap();
    assert_ne!(c.seal("rec", &p).unwrap(), c.seal("rec", &p).unwrap());
}

#[test]
fn tokens_are_256_bit_and_unique() {
    let a = new_token();
    assert_eq!(a.len(), 43);
    assert_ne!(a, new_token());
}

#[test]
fn only_well_formed_session_cookies_are_read() {
    let token = new_token();
    let mut headers = HeaderMap::new();
    headers.insert(
        COOKIE,
        HeaderValue::from_str(&format!("theme=dark; sessionId={token}; x=1")).unwrap(),
    );
    assert_eq!(session_token(&headers, DEFAULT_COOKIE_NAME), Some(token));
    for bad in [
        "sessionId=short",
        "sessionId=",
        "other=abc",
        "sessionId={\"$ne\":1}",
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(bad).unwrap());
        assert_eq!(session_token(&headers, DEFAULT_COOKIE_NAME), None, "{bad}");
    }
}

#[test]
fn record_ids_are_hashes_of_tokens() {
    let token = new_token();
    let id = record_id(&token);
    assert_eq!(id.len(), 64);
    assert!(!id.contains(&token));
    assert_eq!(id, record_id(&token));
}
