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
    assert_eq!(
        session_tokens(&headers, DEFAULT_COOKIE_NAME),
        vec![token.clone()]
    );
    for bad in [
        "sessionId=short",
        "sessionId=",
        "other=abc",
        "sessionId={\"$ne\":1}",
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(bad).unwrap());
        assert!(
            session_tokens(&headers, DEFAULT_COOKIE_NAME).is_empty(),
            "{bad}"
        );
    }
    // Several of the name: all well-formed ones, in order, at most three.
    let tokens: Vec<String> = (0..5).map(|_| new_token()).collect();
    let mut headers = HeaderMap::new();
    let cookie = tokens
        .iter()
        .map(|t| format!("sessionId={t}"))
        .collect::<Vec<_>>()
        .join("; ");
    headers.insert(
        COOKIE,
        HeaderValue::from_str(&format!("sessionId=bad; {cookie}")).unwrap(),
    );
    assert_eq!(
        session_tokens(&headers, DEFAULT_COOKIE_NAME),
        tokens[..3].to_vec()
    );
}

#[test]
fn record_ids_are_hashes_of_tokens() {
    let token = new_token();
    let id = record_id(&token);
    assert_eq!(id.len(), 64);
    assert!(!id.contains(&token));
    assert_eq!(id, record_id(&token));
    // The stored format: lowercase hex SHA-256 (records written by earlier versions still match).
    assert_eq!(
        record_id("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// Two managers on one store stand for two replicas of keel on one database.
async fn two_replicas(cache_ttl: Duration) -> (tempfile::TempDir, SessionManager, SessionManager) {
    two_replicas_with(SessionSettings {
        cache_ttl,
        ..SessionSettings::default()
    })
    .await
}

async fn two_replicas_with(
    settings: SessionSettings,
) -> (tempfile::TempDir, SessionManager, SessionManager) {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::store::DatabaseConfig {
        url: Secret::new(format!("embedded://{}", dir.path().display())),
        ..Default::default()
    };
    let store = Store::connect(&config).await.unwrap();
    let secret = Secret::new("replica-test-secret-0123456789abcdef");
    let a = SessionManager::new(&store, &secret, settings.clone());
    let b = SessionManager::new(&store, &secret, settings);
    (dir, a, b)
}

fn request_headers(set_cookie: &HeaderValue) -> HeaderMap {
    let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(COOKIE, HeaderValue::from_str(pair).unwrap());
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cache_a_logout_on_one_replica_is_honoured_by_the_other_at_once() {
    let (_dir, a, b) = two_replicas(Duration::ZERO).await;
    let headers = request_headers(&a.start("user-1", None).await.unwrap());
    assert_eq!(b.load(&headers).await.unwrap().unwrap().user_id, "user-1");
    a.end(&a.load(&headers).await.unwrap().unwrap())
        .await
        .unwrap();
    assert!(b.load(&headers).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_a_logout_here_is_at_once_and_on_another_replica_within_its_ttl() {
    let (_dir, a, b) = two_replicas(Duration::from_millis(200)).await;
    let headers = request_headers(&a.start("user-1", None).await.unwrap());
    assert_eq!(b.load(&headers).await.unwrap().unwrap().user_id, "user-1");
    let on_a = a.load(&headers).await.unwrap().unwrap();
    a.end(&on_a).await.unwrap();
    assert!(
        a.load(&headers).await.unwrap().is_none(),
        "the replica that logged out forgets the session at once"
    );
    // The other replica trusts its cached entry for at most `cache_ttl` (the bound itself is
    // pinned with explicit instants in `cache.rs`); then it asks the store and agrees.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b.load(&headers).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the other replica never honoured the logout"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_refused_even_while_cached() {
    let (_dir, a, _b) = two_replicas(Duration::from_secs(60)).await;
    let headers = request_headers(&a.start("user-1", None).await.unwrap());
    let session = a.load(&headers).await.unwrap().unwrap();
    let past = bson::DateTime::from_millis(1);
    a.inner.cache.touched(&session.record_id, past, past);
    assert!(a.load(&headers).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_session_still_ends_at_its_absolute_lifetime() {
    let (_dir, a, _b) = two_replicas_with(SessionSettings {
        max_age: Duration::from_secs(3600),
        absolute_max_age: Duration::from_secs(2),
        touch_after: Duration::ZERO,
        cache_ttl: Duration::ZERO,
        ..SessionSettings::default()
    })
    .await;
    let started = std::time::Instant::now();
    let set_cookie = a.start("user-1", None).await.unwrap();
    let max_age: u64 = set_cookie
        .to_str()
        .unwrap()
        .split("Max-Age=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        max_age <= 2,
        "the cookie does not outlive the session: {set_cookie:?}"
    );
    let headers = request_headers(&set_cookie);
    // Used (and touched, which slides the expiry) continuously: it still ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Some(session) = a.load(&headers).await.unwrap() {
        a.touch_if_due(&session).await.unwrap();
        assert!(session.expires_at <= session.absolute_expires_at);
        assert!(std::time::Instant::now() < deadline, "never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(1900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_everywhere_ends_every_session_of_the_user_on_every_replica() {
    let (_dir, a, b) = two_replicas(Duration::ZERO).await;
    let laptop = request_headers(&a.start("user-1", None).await.unwrap());
    let phone = request_headers(&b.start("user-1", None).await.unwrap());
    let other = request_headers(&a.start("user-2", None).await.unwrap());
    assert!(b.load(&laptop).await.unwrap().is_some());
    assert_eq!(a.end_all("user-1").await.unwrap(), 2);
    for headers in [&laptop, &phone] {
        assert!(a.load(headers).await.unwrap().is_none());
        assert!(b.load(headers).await.unwrap().is_none());
    }
    assert_eq!(b.load(&other).await.unwrap().unwrap().user_id, "user-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_several_session_cookies_a_valid_one_wins() {
    let (_dir, a, _b) = two_replicas(Duration::ZERO).await;
    let valid = request_headers(&a.start("user-1", None).await.unwrap());
    let valid = valid[COOKIE].to_str().unwrap().to_owned();
    let stale = format!("sessionId={}", new_token());
    for cookie in [format!("{stale}; {valid}"), format!("{valid}; {stale}")] {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert_eq!(
            a.load(&headers).await.unwrap().unwrap().user_id,
            "user-1",
            "{cookie}"
        );
    }
}
