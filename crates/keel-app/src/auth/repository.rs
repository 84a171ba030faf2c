//! `users` and `auth_failures`: the only code that builds store queries for accounts.

use bson::{doc, oid::ObjectId};
use keel::store::{Collection, FindOptions, IndexSpec, Store, StoreResult, UpdateOptions};

use super::model::{Email, UserRecord};
use crate::indexes::IndexDecl;

pub const USERS: &str = "users";
pub const AUTH_FAILURES: &str = "auth_failures";

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
