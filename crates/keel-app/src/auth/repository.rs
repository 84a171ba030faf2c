//! `users` and `auth_failures`: the only code that builds store queries for accounts.

use bson::{doc, oid::ObjectId};
use keel::store::{Collection, FindOptions, IndexSpec, Store, StoreResult};
use serde::Serialize;

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

/// One refused request, as kept for security monitoring. Strings are already sanitized.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthFailureRecord {
    pub date: bson::DateTime,
    pub url: String,
    pub method: String,
    pub ip: String,
    pub user_agent: String,
    pub request_id: String,
}

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

    /// Failures expire on their own; the collection cannot grow without bound under attack.
    pub fn indexes() -> Vec<IndexDecl> {
        vec![IndexDecl::new(
            AUTH_FAILURES,
            IndexSpec::new(doc! {"date": 1}).ttl(AUTH_FAILURE_RETENTION),
        )]
    }

    pub async fn insert(&self, record: &AuthFailureRecord) -> StoreResult<()> {
        self.failures.insert_as(record).await.map(|_| ())
    }
}
