//! Registration and login.
//!
//! Passwords are hashed with argon2id, parameters from config (`[auth]`), on the blocking pool:
//! a hash costs tens of milliseconds of CPU and ~19 MiB by default, so it must neither stall the
//! async runtime nor run unbounded — a semaphore caps concurrent hashes (memory stays bounded
//! under a credential-stuffing burst even before the rate limiter engages).
//!
//! Login answers the same way, in the same time, for an unknown email and a wrong password: an
//! unknown email is verified against a dummy hash computed at start-up with the same parameters,
//! so response time does not reveal which accounts exist.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use bson::oid::ObjectId;
use keel::config::AuthConfig;
use keel::store::{Store, StoreError};
use keel::validation::FieldErrors;
use tokio::sync::{OnceCell, Semaphore};

use super::model::{Credentials, Password, UserRecord};
use super::repository::UserRepository;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid input: {0}")]
    Invalid(FieldErrors),
    #[error("email already registered")]
    EmailTaken,
    /// Unknown email or wrong password: deliberately indistinguishable.
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct AuthService {
    users: UserRepository,
    hasher: Arc<Hasher>,
}

struct Hasher {
    params: Params,
    permits: Semaphore,
    /// Verified against when the email is unknown, so both failures cost the same. Made on
    /// first use with the configured parameters.
    dummy_hash: OnceCell<String>,
}

impl AuthService {
    /// Config validation keeps the argon2 parameters in range; should they still be refused,
    /// the error is logged and argon2's defaults are used rather than storing weaker hashes.
    pub fn new(store: &Store, settings: &AuthConfig) -> Self {
        let params = Params::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
            None,
        )
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "argon2 parameters refused; using argon2's defaults");
            Params::default()
        });
        Self {
            users: UserRepository::new(store),
            hasher: Arc::new(Hasher {
                params,
                permits: Semaphore::new(settings.max_concurrent_hashes.max(1)),
                dummy_hash: OnceCell::new(),
            }),
        }
    }

    #[tracing::instrument(name = "auth.register", skip_all, fields(email = %credentials.email))]
    pub async fn register(&self, credentials: Credentials) -> Result<UserRecord, AuthError> {
        let password_hash = self.hash(credentials.password).await?;
        let user = UserRecord {
            id: ObjectId::new(),
            email: credentials.email.as_str().to_string(),
            password_hash,
            created_at: bson::DateTime::now(),
        };
        match self.users.insert(&user).await {
            Ok(()) => Ok(user),
            Err(StoreError::DuplicateKey { .. }) => Err(AuthError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    #[tracing::instrument(name = "auth.login", skip_all)]
    pub async fn login(&self, credentials: Credentials) -> Result<UserRecord, AuthError> {
        let user = self.users.find_by_email(&credentials.email).await?;
        let stored_hash = match &user {
            Some(u) => u.password_hash.clone(),
            None => self.dummy_hash().await?,
        };
        let matches = self.verify(credentials.password, stored_hash).await?;
        match user {
            Some(user) if matches => Ok(user),
            _ => Err(AuthError::InvalidCredentials),
        }
    }

    pub async fn user_by_id(&self, id: ObjectId) -> Result<Option<UserRecord>, AuthError> {
        Ok(self.users.find_by_id(id).await?)
    }

    async fn dummy_hash(&self) -> Result<String, AuthError> {
        let hash = self
            .hasher
            .dummy_hash
            .get_or_try_init(|| async {
                let random = Password::parse(&ObjectId::new().to_hex())
                    .map_err(|e| AuthError::Hashing(e.to_string()))?;
                self.hash(random).await
            })
            .await?;
        Ok(hash.clone())
    }

    async fn hash(&self, password: Password) -> Result<String, AuthError> {
        let _permit = self
            .hasher
            .permits
            .acquire()
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))?;
        let params = self.hasher.params.clone();
        tokio::task::spawn_blocking(move || hash_blocking(&params, &password))
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))?
    }

    async fn verify(&self, password: Password, stored_hash: String) -> Result<bool, AuthError> {
        let _permit = self
            .hasher
            .permits
            .acquire()
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))?;
        tokio::task::spawn_blocking(move || verify_blocking(&password, &stored_hash))
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))
    }
}

fn hash_blocking(params: &Params, password: &Password) -> Result<String, AuthError> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt_bytes: [u8; 16] = rand::random();
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| AuthError::Hashing(e.to_string()))?;
    argon
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

/// Parameters come from the stored PHC string, so hashes made under older settings still verify.
/// A stored hash that does not parse verifies as false (and is logged): never a panic.
fn verify_blocking(password: &Password, stored_hash: &str) -> bool {
    match PasswordHash::new(stored_hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "stored password hash does not parse");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Params {
        Params::new(256, 1, 1, None).unwrap()
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let pw = Password::parse("correct horse battery").unwrap();
        let a = hash_blocking(&cheap(), &pw).unwrap();
        let b = hash_blocking(&cheap(), &pw).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=256,t=1,p=1$"));
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify_blocking(&pw, &a));
        assert!(!verify_blocking(
            &Password::parse("wrong horse battery").unwrap(),
            &a
        ));
    }

    #[test]
    fn a_corrupt_stored_hash_verifies_false() {
        let pw = Password::parse("correct horse battery").unwrap();
        assert!(!verify_blocking(&pw, "not-a-hash"));
        assert!(!verify_blocking(&pw, ""));
    }
}
