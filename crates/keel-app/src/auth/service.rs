//! Registration and login.
//!
//! Passwords are hashed with argon2id, parameters from config (`[auth]`), on the blocking pool:
//! a hash costs tens of milliseconds of CPU and ~19 MiB by default, so it must neither stall the
//! async runtime nor run unbounded — a semaphore caps concurrent hashes (memory stays bounded
//! under a credential-stuffing burst even before the rate limiter engages). The permit is held
//! by the blocking work itself: a request cancelled mid-hash (client gone, timeout) leaves its
//! hash running, and the permit stays taken until that hash ends.
//!
//! Login answers the same way, in the same time, for an unknown email and a wrong password: an
//! unknown email is verified against a dummy hash computed at start-up with the same parameters,
//! so response time does not reveal which accounts exist.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use bson::oid::ObjectId;
use keel::config::AuthConfig;
use keel::store::{Store, StoreError};
use keel::validation::FieldErrors;
use tokio::sync::{OnceCell, Semaphore};

use super::model::{Credentials, Password, UserRecord};
use super::repository::{LoginFailureRepository, UserRepository};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid input: {0}")]
    Invalid(FieldErrors),
    #[error("email already registered")]
    EmailTaken,
    /// Unknown email or wrong password: deliberately indistinguishable.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Too many failed logins for this account in the current window (`auth.max_failed_logins`).
    #[error("too many failed logins for this account; retry in {retry_after_secs}s")]
    Throttled { retry_after_secs: u64 },
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct AuthService {
    users: UserRepository,
    login_failures: LoginFailureRepository,
    max_failed_logins: i64,
    hasher: Arc<Hasher>,
}

struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Hashes running now, and the most ever running at once (the cap's evidence).
    running: AtomicUsize,
    peak: AtomicUsize,
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
            login_failures: LoginFailureRepository::new(store, settings.failed_login_window),
            max_failed_logins: i64::from(settings.max_failed_logins),
            hasher: Arc::new(Hasher {
                params,
                permits: Arc::new(Semaphore::new(settings.max_concurrent_hashes.max(1))),
                running: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
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
            roles: Vec::new(),
        };
        match self.users.insert(&user).await {
            Ok(()) => Ok(user),
            Err(StoreError::DuplicateKey { .. }) => Err(AuthError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    #[tracing::instrument(name = "auth.login", skip_all)]
    /// Checks the account's failed-login count first: past `auth.max_failed_logins` in the
    /// window, no password is tried at all (429 until the window ends), for known and unknown
    /// emails alike, so the answer tells nothing about which accounts exist.
    pub async fn login(&self, credentials: Credentials) -> Result<UserRecord, AuthError> {
        let now = bson::DateTime::now();
        let email = &credentials.email;
        let (failures, window_ends) = self.login_failures.current(email, now).await?;
        if failures >= self.max_failed_logins {
            let wait_ms = window_ends.timestamp_millis() - now.timestamp_millis();
            return Err(AuthError::Throttled {
                retry_after_secs: u64::try_from(wait_ms.max(0))
                    .unwrap_or(0)
                    .div_ceil(1000)
                    .max(1),
            });
        }
        let user = self.users.find_by_email(email).await?;
        let stored_hash = match &user {
            Some(u) => u.password_hash.clone(),
            None => self.dummy_hash().await?,
        };
        let matches = self.verify(credentials.password, stored_hash).await?;
        match user {
            Some(user) if matches => {
                if failures > 0 {
                    self.login_failures.clear(email).await?;
                }
                Ok(user)
            }
            _ => {
                self.login_failures.record(email, now).await?;
                Err(AuthError::InvalidCredentials)
            }
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
        let params = self.hasher.params.clone();
        self.with_permit(move || hash_blocking(&params, &password))
            .await?
    }

    async fn verify(&self, password: Password, stored_hash: String) -> Result<bool, AuthError> {
        self.with_permit(move || verify_blocking(&password, &stored_hash))
            .await
    }

    /// Runs `work` on the blocking pool under a hashing permit that the blocking task owns, so
    /// it is released when the work ends, not when the awaiting request goes away.
    async fn with_permit<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let permit = Arc::clone(&self.hasher.permits)
            .acquire_owned()
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))?;
        let hasher = Arc::clone(&self.hasher);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let running = hasher.running.fetch_add(1, Ordering::SeqCst) + 1;
            hasher.peak.fetch_max(running, Ordering::SeqCst);
            let result = work();
            hasher.running.fetch_sub(1, Ordering::SeqCst);
            result
        })
        .await
        .map_err(|e| AuthError::Hashing(e.to_string()))
    }

    /// Password hashes running now and the most that ever ran at once.
    #[cfg(test)]
    fn hashes_running_and_peak(&self) -> (usize, usize) {
        (
            self.hasher.running.load(Ordering::SeqCst),
            self.hasher.peak.load(Ordering::SeqCst),
        )
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
    use std::time::Duration;

    use super::*;
    use crate::auth::model::{Credentials, Email};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelled_logins_never_run_more_hashes_at_once_than_configured() {
        let dir = tempfile::tempdir().unwrap();
        let config = keel::store::DatabaseConfig {
            url: keel::secrets::Secret::new(format!("embedded://{}", dir.path().display())),
            ..Default::default()
        };
        let store = Store::connect(&config).await.unwrap();
        let settings = AuthConfig {
            argon2_memory_kib: 4096,
            argon2_iterations: 2,
            max_concurrent_hashes: 2,
            ..AuthConfig::default()
        };
        let auth = AuthService::new(&store, &settings);
        let mut logins = tokio::task::JoinSet::new();
        for n in 0..50 {
            let auth = auth.clone();
            let credentials = Credentials {
                email: Email::parse(&format!("nobody{n}@example.com")).unwrap(),
                password: Password::parse("a-wrong-password").unwrap(),
            };
            // Each caller gives up almost at once, mid-hash or still waiting for a permit.
            logins.spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_millis(1), auth.login(credentials)).await;
            });
        }
        while logins.join_next().await.is_some() {}
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while auth.hashes_running_and_peak().0 > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "hashes never finished"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (_, peak) = auth.hashes_running_and_peak();
        assert!((1..=2).contains(&peak), "{peak} hashes ran at once, cap 2");
    }

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
