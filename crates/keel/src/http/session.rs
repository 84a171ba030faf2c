//! Server-side sessions on the store (`sessions` collection), so they work on every backend and
//! survive restarts and replicas — the guides' express-session + connect-mongo, done properly.
//!
//! Why not tower-sessions: its lazy touch does not exist (with `OnInactivity` expiry it rewrites
//! the record on every request), its session is a string-keyed map where keel needs one typed
//! value (who is logged in), and it brings `time`, `tower-cookies` and `async-trait` for what is
//! here ~300 lines. The rules this module keeps:
//!
//! - The cookie `sessionId` carries 256 random bits and nothing else (HttpOnly, SameSite=Lax,
//!   Secure in production, Max-Age = `session.max_age`). The store keys the record by the
//!   SHA-256 of the token, so a leaked `sessions` collection holds no usable cookie.
//! - The record's data is AES-256-GCM encrypted with a key derived by HKDF-SHA256 from
//!   `session.secret`; the record id is the associated data, so a ciphertext moved to another
//!   record does not decrypt.
//! - Expiry is enforced on every load (`expiresAt`) and by a TTL index that deletes the record.
//!   Two lifetimes: sliding (`session.ttl`, 24 h, extended by activity) and absolute
//!   (`session.absolute_ttl`, 7 days from login, never extended): `expiresAt` never passes
//!   `absoluteExpiresAt`.
//! - "Log out everywhere" (`end_all`) deletes every record of a user, found by `userKey`, an
//!   HMAC of the user id under a key derived from the secret (the id itself stays encrypted).
//! - Several cookies of the session's name (a stale one from another path or subdomain): the
//!   first that names a usable session wins; at most three are tried.
//! - Lazy touch: an active session's expiry is pushed forward at most once per
//!   `session.touch_after`, so a busy client costs one write per interval, not per request.
//! - Login starts a new session (new token; the previous record is deleted): no fixation.
//!   Logout deletes the record and clears the cookie.
//! - A malformed, tampered, unknown, expired or undecryptable cookie is simply "not logged in".
//!   A store that cannot answer is a 503, never "not logged in".
//! - A validated session is kept in memory (`cache.rs`) and trusted for `session.cache_ttl`
//!   (2 s by default) before the store is asked again, so a busy client costs one store read
//!   per interval, not one per request. Expiry is still checked on every request; a logout on
//!   this replica drops the entry at once; a logout or expiry on another replica is honoured
//!   within `cache_ttl`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bson::{Binary, doc, spec::BinarySubtype};
use http::header::SET_COOKIE;
use http::request::Parts;
use http::{HeaderMap, HeaderValue};

use super::ApiError;
use crate::secrets::Secret;
use crate::store::{Collection, FindOptions, IndexSpec, Store, StoreError, UpdateOptions};
use cache::SessionCache;
use crypto::{SessionCipher, SessionData, new_token, record_id, session_tokens};

pub const SESSIONS: &str = "sessions";
/// The cookie's default name (the guides' `name: 'sessionId'`); `session.cookie_name` sets it.
pub const DEFAULT_COOKIE_NAME: &str = "sessionId";

/// `[session]` settings this layer needs (the secret travels separately, as a `Secret`).
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub cookie_name: String,
    /// Sliding lifetime (`session.ttl`).
    pub max_age: Duration,
    /// Absolute lifetime from login (`session.absolute_ttl`).
    pub absolute_max_age: Duration,
    pub touch_after: Duration,
    /// Sets `Secure` on the cookie (production).
    pub secure_cookie: bool,
    /// How long a validated session is trusted from memory (`Duration::ZERO`: not at all).
    pub cache_ttl: Duration,
    /// Sessions held in memory at most.
    pub cache_capacity: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            cookie_name: DEFAULT_COOKIE_NAME.to_string(),
            max_age: Duration::from_secs(24 * 3600),
            absolute_max_age: Duration::from_secs(7 * 24 * 3600),
            touch_after: Duration::from_secs(3600),
            secure_cookie: false,
            cache_ttl: Duration::from_secs(2),
            cache_capacity: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store: {0}")]
    Store(#[from] StoreError),
    #[error("session encryption failed")]
    Crypto,
}

/// The logged-in state of one request, resolved once by [`session_layer`].
#[derive(Debug, Clone)]
pub struct ActiveSession {
    record_id: String,
    pub user_id: String,
    pub expires_at: bson::DateTime,
    /// The end of its absolute lifetime: `expires_at` never moves past it.
    absolute_expires_at: bson::DateTime,
    touched_at: bson::DateTime,
}

#[cfg(test)]
impl ActiveSession {
    /// A session of `user_id`, for middleware tests that need a logged-in request.
    pub(crate) fn for_tests(user_id: &str) -> Self {
        ActiveSession {
            record_id: "test-record".to_owned(),
            user_id: user_id.to_owned(),
            expires_at: bson::DateTime::MAX,
            absolute_expires_at: bson::DateTime::MAX,
            touched_at: bson::DateTime::now(),
        }
    }
}

/// Extractor: the request's session, or `None` when not logged in.
#[derive(Debug, Clone)]
pub struct CurrentSession(pub Option<ActiveSession>);

impl<S: Send + Sync> FromRequestParts<S> for CurrentSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<CurrentSession>()
            .cloned()
            .unwrap_or(CurrentSession(None)))
    }
}

/// Creates, loads, touches and ends sessions. Cheap to clone.
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: Collection,
    cipher: SessionCipher,
    cache: SessionCache,
    settings: SessionSettings,
}

impl SessionSettings {
    /// The session settings of a configuration (`Secure` cookies in production).
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            cookie_name: config.session.cookie_name.clone(),
            max_age: config.session.ttl,
            absolute_max_age: config.session.absolute_ttl,
            touch_after: config.session.touch_after,
            secure_cookie: config.env.is_production(),
            cache_ttl: config.session.cache_ttl,
            cache_capacity: config.session.cache_capacity,
        }
    }
}

impl SessionManager {
    pub fn new(store: &Store, secret: &Secret, settings: SessionSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions: store.collection(SESSIONS),
                cipher: SessionCipher::new(secret),
                cache: SessionCache::new(settings.cache_ttl, settings.cache_capacity),
                settings,
            }),
        }
    }

    /// Expired records are deleted by the store (TTL on `expiresAt`, expire after 0 s); a
    /// user's records are found by `userKey` (log out everywhere).
    pub fn indexes() -> Vec<(&'static str, IndexSpec)> {
        vec![
            (
                SESSIONS,
                IndexSpec::new(doc! {"expiresAt": 1}).ttl(Duration::ZERO),
            ),
            (SESSIONS, IndexSpec::new(doc! {"userKey": 1})),
        ]
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.inner.settings
    }

    /// Resolves the cookie of a request: `Ok(None)` when it names no usable session. A store
    /// that cannot answer is an error, never "not logged in" (which would answer 401 to a
    /// logged-in user and record a false authentication failure).
    pub async fn load(&self, headers: &HeaderMap) -> Result<Option<ActiveSession>, SessionError> {
        Ok(self
            .load_with_token(headers)
            .await?
            .map(|(session, _)| session))
    }

    /// `load`, with the cookie token that named the session. Of several cookies of the
    /// session's name (a stale one at another path or domain beside the current one), the
    /// first that names a usable session wins; at most `MAX_SESSION_COOKIES` are tried.
    async fn load_with_token(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(ActiveSession, String)>, SessionError> {
        for token in session_tokens(headers, &self.inner.settings.cookie_name) {
            if let Some(session) = self.load_token(&token).await? {
                return Ok(Some((session, token)));
            }
        }
        Ok(None)
    }

    async fn load_token(&self, token: &str) -> Result<Option<ActiveSession>, SessionError> {
        let record_id = record_id(token);
        let now = bson::DateTime::now();
        if let Some(cached) = self.inner.cache.get(&record_id, Instant::now()) {
            if cached.expires_at <= now {
                self.inner.cache.remove(&record_id);
                return Ok(None);
            }
            return Ok(Some(cached));
        }
        let checked_at = Instant::now();
        let active = self.load_from_store(record_id, now).await?;
        if let Some(active) = &active {
            self.inner.cache.put(active.clone(), checked_at);
        }
        Ok(active)
    }

    /// The session of a record, read and decrypted: `None` when there is no usable one.
    async fn load_from_store(
        &self,
        record_id: String,
        now: bson::DateTime,
    ) -> Result<Option<ActiveSession>, SessionError> {
        let found = self
            .inner
            .sessions
            .find_one(doc! {"_id": &record_id}, FindOptions::default())
            .await?;
        Ok(self.usable(record_id, found, now))
    }

    /// A stored record as a live session, if it is one.
    fn usable(
        &self,
        record_id: String,
        record: Option<bson::Document>,
        now: bson::DateTime,
    ) -> Option<ActiveSession> {
        let record = record?;
        // Records from before absolute lifetimes count theirs from `createdAt`.
        let absolute_expires_at = match record.get_datetime("absoluteExpiresAt") {
            Ok(at) => *at,
            Err(_) => self.absolute_expiry_from(*record.get_datetime("createdAt").ok()?),
        };
        let expires_at = (*record.get_datetime("expiresAt").ok()?).min(absolute_expires_at);
        if expires_at <= now {
            return None;
        }
        let touched_at = record
            .get_datetime("touchedAt")
            .ok()
            .copied()
            .unwrap_or(expires_at);
        let sealed = match record.get("data") {
            Some(bson::Bson::Binary(b)) => b.bytes.clone(),
            _ => return None,
        };
        let Some(data) = self.inner.cipher.open(&record_id, &sealed) else {
            tracing::warn!(
                evt.category = "authentication",
                evt.name = "sessionUndecryptable",
                evt.outcome = "failure",
                "session record failed authentication (tampered, or session.secret changed)"
            );
            return None;
        };
        Some(ActiveSession {
            record_id,
            user_id: data.user_id,
            expires_at,
            absolute_expires_at,
            touched_at,
        })
    }

    /// Starts a session for `user_id` under a fresh token, deleting `previous` (rotation on
    /// login). Returns the `Set-Cookie` value.
    pub async fn start(
        &self,
        user_id: &str,
        previous: Option<&ActiveSession>,
    ) -> Result<HeaderValue, SessionError> {
        if let Some(old) = previous {
            self.inner.cache.remove(&old.record_id);
            self.inner
                .sessions
                .delete_one(doc! {"_id": &old.record_id})
                .await?;
        }
        let token = new_token();
        let record_id = record_id(&token);
        let now = bson::DateTime::now();
        let data = SessionData {
            user_id: user_id.to_string(),
            created_at_ms: now.timestamp_millis(),
        };
        let plaintext = serde_json::to_vec(&data).map_err(|_| SessionError::Crypto)?;
        let sealed = self.inner.cipher.seal(&record_id, &plaintext)?;
        let absolute = self.absolute_expiry_from(now);
        self.inner
            .sessions
            .insert_one(doc! {
                "_id": &record_id,
                "data": Binary { subtype: BinarySubtype::Generic, bytes: sealed },
                "userKey": self.inner.cipher.user_key(user_id),
                "createdAt": now,
                "touchedAt": now,
                "expiresAt": self.expiry_from(now).min(absolute),
                "absoluteExpiresAt": absolute,
            })
            .await?;
        Ok(self.cookie(&token, absolute))
    }

    /// Ends every session of `user_id` ("log out everywhere"): on this replica at once, on
    /// others within `session.cache_ttl`. Returns how many were ended.
    pub async fn end_all(&self, user_id: &str) -> Result<u64, SessionError> {
        self.inner.cache.remove_user(user_id);
        let ended = self
            .inner
            .sessions
            .delete_many(doc! {"userKey": self.inner.cipher.user_key(user_id)})
            .await?;
        // A request of this user that read its session from the store just now may have
        // cached it again meanwhile: drop it once more.
        self.inner.cache.remove_user(user_id);
        Ok(ended)
    }

    /// Deletes the session; returns the `Set-Cookie` value that clears the cookie.
    pub async fn end(&self, session: &ActiveSession) -> Result<HeaderValue, SessionError> {
        self.inner.cache.remove(&session.record_id);
        self.inner
            .sessions
            .delete_one(doc! {"_id": &session.record_id})
            .await?;
        Ok(self.clearing_cookie())
    }

    /// Pushes the expiry forward when the last touch is older than `touch_after`. Returns true
    /// when it wrote (the caller then refreshes the cookie's Max-Age).
    pub async fn touch_if_due(&self, session: &ActiveSession) -> Result<bool, SessionError> {
        let now = bson::DateTime::now();
        let since_ms = now.timestamp_millis() - session.touched_at.timestamp_millis();
        if since_ms < self.inner.settings.touch_after.as_millis() as i64 {
            return Ok(false);
        }
        let expires_at = self.expiry_from(now).min(session.absolute_expires_at);
        // `userKey` and `absoluteExpiresAt` too: records from before they existed gain them.
        let updated = self
            .inner
            .sessions
            .update_one(
                doc! {"_id": &session.record_id},
                doc! {"$set": {
                    "touchedAt": now,
                    "expiresAt": expires_at,
                    "absoluteExpiresAt": session.absolute_expires_at,
                    "userKey": self.inner.cipher.user_key(&session.user_id),
                }},
                UpdateOptions::default(),
            )
            .await?;
        if updated.matched == 0 {
            // Ended elsewhere since it was cached: forget it; the next request reads the store.
            self.inner.cache.remove(&session.record_id);
            return Ok(false);
        }
        self.inner
            .cache
            .touched(&session.record_id, now, expires_at);
        Ok(true)
    }

    /// The cookie for a token, as sent on login and on each touch: it lives `session.ttl`,
    /// never past the session's absolute end.
    fn cookie(&self, token: &str, absolute_expires_at: bson::DateTime) -> HeaderValue {
        let secure = if self.inner.settings.secure_cookie {
            "; Secure"
        } else {
            ""
        };
        let left_ms =
            absolute_expires_at.timestamp_millis() - bson::DateTime::now().timestamp_millis();
        let left_secs = u64::try_from(left_ms.max(0) / 1000).unwrap_or(0);
        let value = format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            self.inner.settings.cookie_name,
            self.inner.settings.max_age.as_secs().min(left_secs)
        );
        // Token is base64url and the rest is ASCII: always a valid header value.
        HeaderValue::from_str(&value).unwrap_or_else(|_| self.clearing_cookie())
    }

    pub fn clearing_cookie(&self) -> HeaderValue {
        let secure = if self.inner.settings.secure_cookie {
            "; Secure"
        } else {
            ""
        };
        HeaderValue::from_str(&format!(
            "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
            self.inner.settings.cookie_name
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("sessionId=; Path=/; Max-Age=0"))
    }

    fn expiry_from(&self, now: bson::DateTime) -> bson::DateTime {
        after(now, self.inner.settings.max_age)
    }

    fn absolute_expiry_from(&self, created: bson::DateTime) -> bson::DateTime {
        after(created, self.inner.settings.absolute_max_age)
    }
}

fn after(at: bson::DateTime, duration: Duration) -> bson::DateTime {
    let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2);
    bson::DateTime::from_millis(at.timestamp_millis().saturating_add(ms))
}

/// Middleware: resolves the session once, lazily touches it, and makes it available to
/// handlers through [`CurrentSession`].
pub async fn session_layer(
    State(sessions): State<SessionManager>,
    mut request: Request,
    next: Next,
) -> Response {
    let loaded = match sessions.load_with_token(request.headers()).await {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(error = %e, "session lookup failed");
            return ApiError::from(e).into_response();
        }
    };
    let mut refreshed_cookie = None;
    if let Some((active, token)) = &loaded {
        match sessions.touch_if_due(active).await {
            Ok(true) => refreshed_cookie = Some(sessions.cookie(token, active.absolute_expires_at)),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "session touch failed"),
        }
    }
    let session = loaded.map(|(session, _)| session);
    request.extensions_mut().insert(CurrentSession(session));
    let mut response = next.run(request).await;
    // A handler that set its own cookie (login, logout) wins over the refresh.
    if let Some(cookie) = refreshed_cookie
        && !response.headers().contains_key(SET_COOKIE)
    {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

mod cache;
pub(crate) mod crypto;
#[cfg(test)]
mod tests;
