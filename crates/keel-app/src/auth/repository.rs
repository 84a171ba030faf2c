//! `users` and `auth_failures`: the only code that builds store queries for accounts.

use bson::{doc, oid::ObjectId};
use keel::store::{Collection, FindOptions, IndexSpec, Store, StoreResult, UpdateOptions};
use sha2::Digest;

use super::model::{Email, UserRecord};
use crate::indexes::IndexDecl;

pub const USERS: &str = "users";
pub const AUTH_FAILURES: &str = "auth_failures";
pub const LOGIN_FAILURES: &str = "login_failures";

/// How long an auth-failure record is kept for security review.
pub const AUTH_FAILURE_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(30 * 24 * 3600);

#[derive(Clone)]
pub struct UserRepository {
    users: Collection,
}

impl UserRepository {
    pub fn new(store: &Store) -> Self {
        Self {
            users: store.collection(USERS),
        }
    }

    /// Emails are unique: the index, not a check-then-insert, is what guarantees it.
    pub fn indexes() -> Vec<IndexDecl> {
        vec![IndexDecl::new(
            USERS,
            IndexSpec::new(doc! {"email": 1}).unique(),
        )]
    }

    /// Fails with `StoreError::DuplicateKey` when the email is taken.
    pub async fn insert(&self, user: &UserRecord) -> StoreResult<()> {
        self.users.insert_as(user).await.map(|_| ())
    }

    pub async fn find_by_email(&self, email: &Email) -> StoreResult<Option<UserRecord>> {
        self.users
            .find_one_as(doc! {"email": email.as_str()}, FindOptions::default())
            .await
    }

    pub async fn find_by_id(&self, id: ObjectId) -> StoreResult<Option<UserRecord>> {
        self.users
            .find_one_as(doc! {"_id": id}, FindOptions::default())
            .await
    }

    /// Grants (`granted`) or revokes `role` for the user with `email`. `false` when no user has
    /// that email. Idempotent: granting twice keeps one entry (`$addToSet`).
    pub async fn set_role(&self, email: &Email, role: &str, granted: bool) -> StoreResult<bool> {
        let update = if granted {
            doc! {"$addToSet": {"roles": role}}
        } else {
            doc! {"$pull": {"roles": role}}
        };
        let outcome = self
            .users
            .update_one(
                doc! {"email": email.as_str()},
                update,
                keel::store::UpdateOptions::default(),
            )
            .await?;
        Ok(outcome.matched == 1)
    }
}

/// One refused request, as told to `AuthFailureRepository::record`. Strings are already
/// sanitized; `ip` is the client's address as the rate limiter counts it (an IPv6 client by its
/// /64) and `route` the matched route pattern, so neither can be varied without bound.
#[derive(Debug, Clone)]
pub struct AuthFailure {
    pub at: bson::DateTime,
    pub route: String,
    pub method: String,
    pub ip: String,
    pub user_agent: String,
    pub request_id: String,
}

/// Failures are aggregated: one document per client address, method, route and hour, with a
/// `count` (the first and the last request's details kept). Under a flood of 401s the
/// collection grows by at most one document per (client, route, hour), not one per request.
const AUTH_FAILURE_WINDOW_MS: i64 = 3_600_000;

#[derive(Clone)]
pub struct AuthFailureRepository {
    failures: Collection,
}

impl AuthFailureRepository {
    pub fn new(store: &Store) -> Self {
        Self {
            failures: store.collection(AUTH_FAILURES),
        }
    }

    /// Failures expire on their own (30 days after a window's last one).
    pub fn indexes() -> Vec<IndexDecl> {
        vec![IndexDecl::new(
            AUTH_FAILURES,
            IndexSpec::new(doc! {"date": 1}).ttl(AUTH_FAILURE_RETENTION),
        )]
    }

    /// Counts `failure` in its window's document, creating it on the window's first failure.
    pub async fn record(&self, failure: &AuthFailure) -> StoreResult<()> {
        let window = failure
            .at
            .timestamp_millis()
            .div_euclid(AUTH_FAILURE_WINDOW_MS)
            * AUTH_FAILURE_WINDOW_MS;
        let id = format!(
            "{}|{} {}|{window}",
            failure.ip, failure.method, failure.route
        );
        self.failures
            .update_one(
                doc! { "_id": id },
                doc! {
                    "$inc": { "count": 1_i64 },
                    "$set": {
                        "date": failure.at,
                        "userAgent": &failure.user_agent,
                        "requestId": &failure.request_id,
                    },
                    "$setOnInsert": {
                        "window": bson::DateTime::from_millis(window),
                        "firstAt": failure.at,
                        "ip": &failure.ip,
                        "method": &failure.method,
                        "url": &failure.route,
                    },
                },
                UpdateOptions { upsert: true },
            )
            .await
            .map(|_| ())
    }
}

/// Failed logins per account: one document per email with a `count` and the end of its
/// window (`expiresAt`), which starts at the window's first failure. The email is kept only as
/// a SHA-256 digest (the attempts name accounts that may not exist). Shared by every replica
/// through the store.
#[derive(Clone)]
pub struct LoginFailureRepository {
    failures: Collection,
    window_ms: i64,
}

impl LoginFailureRepository {
    pub fn new(store: &Store, window: std::time::Duration) -> Self {
        Self {
            failures: store.collection(LOGIN_FAILURES),
            window_ms: i64::try_from(window.as_millis())
                .unwrap_or(i64::MAX)
                .max(1000),
        }
    }

    /// A window's document expires once the window is over.
    pub fn indexes() -> Vec<IndexDecl> {
        vec![IndexDecl::new(
            LOGIN_FAILURES,
            IndexSpec::new(doc! {"expiresAt": 1}).ttl(std::time::Duration::ZERO),
        )]
    }

    fn key(email: &Email) -> String {
        keel::store::lower_hex(&sha2::Sha256::digest(email.as_str().as_bytes()))
    }

    /// Failures counted for `email` in its current window, and when the window ends.
    pub async fn current(
        &self,
        email: &Email,
        now: bson::DateTime,
    ) -> StoreResult<(i64, bson::DateTime)> {
        let found = self
            .failures
            .find_one(
                doc! {"_id": Self::key(email), "expiresAt": {"$gt": now}},
                FindOptions::default(),
            )
            .await?;
        Ok(found
            .and_then(|d| {
                let count = match d.get("count") {
                    Some(bson::Bson::Int64(n)) => *n,
                    Some(bson::Bson::Int32(n)) => i64::from(*n),
                    _ => return None,
                };
                Some((count, *d.get_datetime("expiresAt").ok()?))
            })
            .unwrap_or((0, now)))
    }

    /// Counts a failure: in the running window, or as the first of a new one. (Two failures
    /// racing to open a new window may count once: the error is one attempt, in the
    /// attacker's favour at most once per window.)
    pub async fn record(&self, email: &Email, now: bson::DateTime) -> StoreResult<()> {
        let key = Self::key(email);
        let counted = self
            .failures
            .update_one(
                doc! {"_id": &key, "expiresAt": {"$gt": now}},
                doc! {"$inc": {"count": 1_i64}},
                UpdateOptions::default(),
            )
            .await?;
        if counted.matched == 1 {
            return Ok(());
        }
        let ends =
            bson::DateTime::from_millis(now.timestamp_millis().saturating_add(self.window_ms));
        self.failures
            .update_one(
                doc! {"_id": &key},
                doc! {"$set": {"count": 1_i64, "expiresAt": ends}},
                UpdateOptions { upsert: true },
            )
            .await
            .map(|_| ())
    }

    /// A successful login starts the account's count afresh.
    pub async fn clear(&self, email: &Email) -> StoreResult<()> {
        self.failures
            .delete_one(doc! {"_id": Self::key(email)})
            .await
            .map(|_| ())
    }
}
