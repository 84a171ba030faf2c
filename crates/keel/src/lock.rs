//! Distributed locks as leases in `__system_locks` (the guides' database lock, 4.3, made safe).
//!
//! The guide checks for a lock document and then inserts one: two processes can both see "free"
//! and both insert. Here taking a lock is ONE atomic store operation:
//!
//! ```text
//! find_one_and_update({_id: name, expiresAt: {$lt: now}},
//!                     {$set: {owner, holder, acquiredAt, expiresAt: now + ttl}, $inc: {token: 1}},
//!                     upsert, return after)
//! ```
//!
//! - free (no document yet): the upsert inserts `{_id: name, token: 1, …}`; of several racing
//!   inserts the unique `_id` lets exactly one through, the others get `DuplicateKey` → not taken.
//! - expired or released: the filter matches, the update takes it over and bumps the token.
//! - held: the filter does not match, the upsert's insert collides on `_id` → not taken.
//!
//! The lock document is never deleted, so the **fencing token** only grows per name: release sets
//! `expiresAt` in the past instead. A holder passes its token to whatever it writes so a storage
//! layer can refuse a stale holder's late writes.
//!
//! A `Lease` renews itself every `ttl / 3` while held. When a renewal finds the lock no longer
//! ours (another process took it over after we stalled past the ttl), the lease is **lost**: its
//! `lost` token is cancelled and the work holding it must stop. Lost, too — whether or not a
//! renewal is still waiting for the store — once the last confirmed expiry minus a **safety
//! margin** (`safety_margin`: a fifth of the ttl, at most 5 s) is reached: the holder stops
//! before another process can possibly take the lock, not after. "Confirmed expiry" counts
//! from when the acquiring or renewing write was *sent*, so a slow answer only shortens it.
//! Release is filtered on owner *and* token, so only the holder releases.
//!
//! **Fencing.** A paused holder can still wake up and write before it notices the loss. `Fence`
//! turns its token into a condition on the documents it writes: each write stamps
//! `fences.<lock>: token` and only matches documents whose stamp is absent or not newer, so a
//! stale holder's write to anything a newer holder has written matches nothing.
//!
//! Expiry compares wall clocks of different machines: keep ttl well above the clock skew
//! between replicas (seconds, not milliseconds; NTP keeps skew far below that).
//!
//! **Once per tick.** A lock only keeps two runs apart in time: a replica whose scheduler fires
//! a few milliseconds late, after the first replica's quick run has released the lock, would
//! take it and run the same tick again. `acquire_for_tick` adds the tick (the scheduled fire
//! time, the same instant on every replica) to the one atomic operation: the filter also asks
//! `lastTick < tick` and the update sets `lastTick: tick`, so each tick is taken at most once
//! whatever the skew.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{
    Collection, FindOneAndUpdateOptions, FindOptions, ReturnDocument, Store, StoreError,
    UpdateOptions,
};

pub const LOCKS_COLLECTION: &str = "__system_locks";

#[derive(Debug, Clone, thiserror::Error)]
pub enum LockError {
    #[error("lock store: {0}")]
    Store(#[from] StoreError),
    /// The lease was taken over (or could not be renewed in time); the holder must stop.
    #[error("lock {name} was lost (token {token})")]
    Lost { name: String, token: i64 },
}

/// Who holds a lock, as stored (for `keel task list` and diagnostics).
#[derive(Debug, Clone, PartialEq)]
pub struct LockInfo {
    pub name: String,
    pub holder: String,
    pub token: i64,
    pub expires_at: bson::DateTime,
}

/// Takes and inspects locks. Cheap to clone.
#[derive(Clone)]
pub struct Locks {
    collection: Collection,
    /// `hostname:pid`, stored beside the owner id so a human can tell who holds a lock.
    holder: Arc<str>,
}

/// Whether a lease renews itself in the background or only when its holder calls `renew`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Automatic,
    Manual,
}

impl Locks {
    pub fn new(store: &Store) -> Self {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown-host".to_owned());
        Locks {
            collection: store.collection(LOCKS_COLLECTION),
            holder: Arc::from(format!("{host}:{}", std::process::id())),
        }
    }

    /// Takes `name` for `ttl` if it is free or expired, renewing it automatically while the
    /// returned lease lives. `None` means someone else holds it.
    pub async fn acquire(&self, name: &str, ttl: Duration) -> Result<Option<Lease>, LockError> {
        self.acquire_with(name, ttl, Renewal::Automatic).await
    }

    pub async fn acquire_with(
        &self,
        name: &str,
        ttl: Duration,
        renewal: Renewal,
    ) -> Result<Option<Lease>, LockError> {
        self.acquire_inner(name, ttl, renewal, None).await
    }

    /// `acquire` for the scheduled run of `tick`: not taken when this tick was already taken,
    /// even if that run has finished and released the lock (see "Once per tick" above).
    pub async fn acquire_for_tick(
        &self,
        name: &str,
        ttl: Duration,
        tick: bson::DateTime,
    ) -> Result<Option<Lease>, LockError> {
        self.acquire_inner(name, ttl, Renewal::Automatic, Some(tick))
            .await
    }

    #[tracing::instrument(name = "lock.acquire", skip(self), fields(ttl_ms = ttl.as_millis() as u64))]
    async fn acquire_inner(
        &self,
        name: &str,
        ttl: Duration,
        renewal: Renewal,
        tick: Option<bson::DateTime>,
    ) -> Result<Option<Lease>, LockError> {
        let owner = uuid::Uuid::new_v4().to_string();
        let sent = Instant::now();
        let now = bson::DateTime::now();
        let mut filter = doc! { "_id": name, "expiresAt": { "$lt": now } };
        let mut set = doc! {
            "owner": &owner,
            "holder": self.holder.as_ref(),
            "acquiredAt": now,
            "expiresAt": now.saturating_add_duration(ttl),
        };
        if let Some(tick) = tick {
            filter.insert(
                "$or",
                vec![
                    doc! { "lastTick": { "$exists": false } },
                    doc! { "lastTick": { "$lt": tick } },
                ],
            );
            set.insert("lastTick", tick);
        }
        let update = doc! { "$set": set, "$inc": { "token": 1_i64 } };
        let options = FindOneAndUpdateOptions {
            upsert: true,
            return_document: ReturnDocument::After,
            ..FindOneAndUpdateOptions::default()
        };
        let taken = match self
            .collection
            .find_one_and_update(filter, update, options)
            .await
        {
            Ok(Some(document)) => document,
            // Held by someone else: our upsert's insert collided with their document's `_id`.
            Err(StoreError::DuplicateKey { .. }) | Ok(None) => {
                metrics::counter!("keel_lock_acquire_total", "outcome" => "held").increment(1);
                return Ok(None);
            }
            Err(error) => return Err(error.into()),
        };
        let token = taken.get("token").and_then(as_i64).ok_or_else(|| {
            StoreError::Backend(format!("lock {name} has no numeric fencing token"))
        })?;
        metrics::counter!("keel_lock_acquire_total", "outcome" => "acquired").increment(1);
        tracing::debug!(lock = name, token, "lock acquired");
        Ok(Some(Lease::start(
            self.clone(),
            name.to_owned(),
            owner,
            token,
            ttl,
            renewal,
            sent,
        )))
    }

    /// The current holder of `name`, if the lock is held and unexpired.
    pub async fn holder(&self, name: &str) -> Result<Option<LockInfo>, LockError> {
        let now = bson::DateTime::now();
        let found = self
            .collection
            .find_one(
                doc! { "_id": name, "expiresAt": { "$gte": now } },
                FindOptions::default(),
            )
            .await?;
        Ok(found.and_then(|d| lock_info(name, &d)))
    }

    /// Extends the lease if it is still ours. `false` means it was taken over.
    async fn extend(
        &self,
        name: &str,
        owner: &str,
        token: i64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let expires_at = bson::DateTime::now().saturating_add_duration(ttl);
        let result = self
            .collection
            .update_one(
                doc! { "_id": name, "owner": owner, "token": token },
                doc! { "$set": { "expiresAt": expires_at } },
                UpdateOptions::default(),
            )
            .await?;
        Ok(result.matched == 1)
    }

    /// Gives the lock up if it is still ours: expiry moves to the past, the token stays.
    async fn give_up(&self, name: &str, owner: &str, token: i64) -> Result<bool, StoreError> {
        let result = self
            .collection
            .update_one(
                doc! { "_id": name, "owner": owner, "token": token },
                doc! { "$set": {
                    "expiresAt": bson::DateTime::from_millis(0),
                    "releasedAt": bson::DateTime::now(),
                } },
                UpdateOptions::default(),
            )
            .await?;
        Ok(result.matched == 1)
    }
}

fn lock_info(name: &str, document: &Document) -> Option<LockInfo> {
    Some(LockInfo {
        name: name.to_owned(),
        holder: document.get_str("holder").unwrap_or("unknown").to_owned(),
        token: document.get("token").and_then(as_i64)?,
        expires_at: document.get_datetime("expiresAt").ok().copied()?,
    })
}

fn as_i64(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int64(n) => Some(*n),
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Double(n) if n.fract() == 0.0 => Some(*n as i64),
        _ => None,
    }
}

/// A held lock. Renews itself (unless taken with `Renewal::Manual`); call `release` when done.
/// Dropping a lease without releasing stops its renewal and leaves the lock to expire after its
/// ttl — exactly what happens when the holding process dies.
pub struct Lease {
    locks: Locks,
    name: String,
    owner: String,
    token: i64,
    ttl: Duration,
    lost: CancellationToken,
    /// When the lock is ours until at least (the last acquire/renew write's send + ttl).
    valid_until: Arc<Mutex<Instant>>,
    renewer: Option<JoinHandle<()>>,
    watchdog: JoinHandle<()>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.name)
            .field("token", &self.token)
            .field("lost", &self.lost.is_cancelled())
            .finish()
    }
}

impl Lease {
    fn start(
        locks: Locks,
        name: String,
        owner: String,
        token: i64,
        ttl: Duration,
        renewal: Renewal,
        sent: Instant,
    ) -> Lease {
        let lost = CancellationToken::new();
        let valid_until = Arc::new(Mutex::new(sent + ttl));
        let renewer = (renewal == Renewal::Automatic).then(|| {
            tokio::spawn(renew_while_held(
                locks.clone(),
                name.clone(),
                owner.clone(),
                token,
                ttl,
                lost.clone(),
                valid_until.clone(),
            ))
        });
        let watchdog = tokio::spawn(lose_at_deadline(
            name.clone(),
            token,
            safety_margin(ttl),
            lost.clone(),
            valid_until.clone(),
        ));
        Lease {
            locks,
            name,
            owner,
            token,
            ttl,
            lost,
            valid_until,
            renewer,
            watchdog,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token: strictly greater than that of every earlier holder of this lock.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// Cancelled when the lease is lost; the work done under the lock should watch it.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Lost, or past its deadline (the confirmed expiry minus the safety margin) even if the
    /// watchdog has not run yet.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
            || Instant::now() >= deadline(&self.valid_until, safety_margin(self.ttl))
    }

    /// `Fence` for this lease's writes.
    pub fn fence(&self) -> Fence {
        Fence::new(&self.name, self.token)
    }

    /// Extends the lease by its ttl now (for `Renewal::Manual` holders, at their checkpoints).
    pub async fn renew(&self) -> Result<(), LockError> {
        if self.is_lost() {
            return Err(self.lost_error());
        }
        let sent = Instant::now();
        if self
            .locks
            .extend(&self.name, &self.owner, self.token, self.ttl)
            .await?
        {
            confirm(&self.valid_until, sent + self.ttl);
            Ok(())
        } else {
            self.lost.cancel();
            Err(self.lost_error())
        }
    }

    /// Releases the lock if it is still ours; `Ok(false)` when it had already been taken over.
    pub async fn release(mut self) -> Result<bool, LockError> {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        self.watchdog.abort();
        let released = self
            .locks
            .give_up(&self.name, &self.owner, self.token)
            .await?;
        tracing::debug!(lock = %self.name, token = self.token, released, "lock released");
        Ok(released)
    }

    fn lost_error(&self) -> LockError {
        LockError::Lost {
            name: self.name.clone(),
            token: self.token,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        self.watchdog.abort();
    }
}

/// How long before its confirmed expiry a lease counts as lost: a fifth of the ttl, at most
/// 5 s. It covers a renewal still in flight, timer lateness and clock skew between replicas.
pub fn safety_margin(ttl: Duration) -> Duration {
    (ttl / 5).min(Duration::from_secs(5))
}

fn deadline(valid_until: &Mutex<Instant>, margin: Duration) -> Instant {
    *valid_until.lock().unwrap_or_else(PoisonError::into_inner) - margin
}

/// Records a renewal confirmed by the store (never moves the expiry backwards).
fn confirm(valid_until: &Mutex<Instant>, until: Instant) {
    let mut current = valid_until.lock().unwrap_or_else(PoisonError::into_inner);
    *current = (*current).max(until);
}

/// Cancels `lost` at the deadline unless renewals keep moving it.
async fn lose_at_deadline(
    name: String,
    token: i64,
    margin: Duration,
    lost: CancellationToken,
    valid_until: Arc<Mutex<Instant>>,
) {
    loop {
        let at = deadline(&valid_until, margin);
        if Instant::now() >= at {
            tracing::warn!(lock = %name, token, "lock not renewed in time; lease lost before it could expire");
            metrics::counter!("keel_lock_lost_total").increment(1);
            lost.cancel();
            return;
        }
        tokio::select! {
            () = lost.cancelled() => return,
            () = tokio::time::sleep_until(at.into()) => {}
        }
    }
}

/// The renewal loop of one lease: extend every ttl/3; stop and cancel `lost` once the lock is
/// not ours any more. A store that does not answer is retried; the watchdog
/// (`lose_at_deadline`) ends the lease in time if it never does.
async fn renew_while_held(
    locks: Locks,
    name: String,
    owner: String,
    token: i64,
    ttl: Duration,
    lost: CancellationToken,
    valid_until: Arc<Mutex<Instant>>,
) {
    let period = (ttl / 3).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            () = lost.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let sent = Instant::now();
        let outcome = tokio::select! {
            () = lost.cancelled() => return,
            outcome = locks.extend(&name, &owner, token, ttl) => outcome,
        };
        match outcome {
            Ok(true) => confirm(&valid_until, sent + ttl),
            Ok(false) => {
                tracing::warn!(lock = %name, token, "lock taken over by another holder; lease lost");
                metrics::counter!("keel_lock_lost_total").increment(1);
                lost.cancel();
                return;
            }
            Err(error) => {
                tracing::warn!(lock = %name, token, %error, "lock renewal failed; retrying");
            }
        }
    }
}

/// A lock holder's fencing token as a condition on what it writes (see "Fencing" above).
#[derive(Debug, Clone, PartialEq)]
pub struct Fence {
    field: String,
    token: i64,
}

impl Fence {
    pub fn new(lock: &str, token: i64) -> Self {
        // One field per lock under `fences`; a lock name cannot reach into another path.
        let key: String = lock
            .chars()
            .map(|c| if c == '.' || c == '$' { '_' } else { c })
            .collect();
        Fence {
            field: format!("fences.{key}"),
            token,
        }
    }

    pub fn token(&self) -> i64 {
        self.token
    }

    /// `filter`, and: the document was not written under a newer token of this lock.
    pub fn guard(&self, filter: Document) -> Document {
        doc! { "$and": [
            filter,
            { "$or": [
                { &self.field: { "$exists": false } },
                { &self.field: { "$lte": self.token } },
            ] },
        ] }
    }

    /// Adds the stamp `fences.<lock>: token` to `update`'s `$set`.
    pub fn stamp(&self, mut update: Document) -> Document {
        match update.get_mut("$set") {
            Some(Bson::Document(set)) => {
                set.insert(self.field.clone(), self.token);
            }
            _ => {
                update.insert("$set", doc! { &self.field: self.token });
            }
        }
        update
    }
}

/// `guard` and `stamp` when there is a fence (a `--force` run holds no lock and has none).
pub fn fenced(fence: Option<&Fence>, filter: Document, update: Document) -> (Document, Document) {
    match fence {
        Some(fence) => (fence.guard(filter), fence.stamp(update)),
        None => (filter, update),
    }
}

/// `guard` when there is a fence: the filter of a fenced delete.
pub fn guarded(fence: Option<&Fence>, filter: Document) -> Document {
    match fence {
        Some(fence) => fence.guard(filter),
        None => filter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safety_margin_is_a_fifth_of_the_ttl_up_to_five_seconds() {
        assert_eq!(
            safety_margin(Duration::from_millis(300)),
            Duration::from_millis(60)
        );
        assert_eq!(
            safety_margin(Duration::from_secs(10)),
            Duration::from_secs(2)
        );
        assert_eq!(
            safety_margin(Duration::from_secs(600)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_fence_guards_and_stamps_one_field_per_lock() {
        let fence = Fence::new("process-data", 7);
        assert_eq!(
            fence.guard(doc! { "_id": 1 }),
            doc! { "$and": [
                { "_id": 1 },
                { "$or": [
                    { "fences.process-data": { "$exists": false } },
                    { "fences.process-data": { "$lte": 7_i64 } },
                ] },
            ] }
        );
        assert_eq!(
            fence.stamp(doc! { "$set": { "a": 1 } }),
            doc! { "$set": { "a": 1, "fences.process-data": 7_i64 } }
        );
        assert_eq!(
            fence.stamp(doc! { "$unset": { "a": "" } }),
            doc! { "$unset": { "a": "" }, "$set": { "fences.process-data": 7_i64 } }
        );
        assert_eq!(Fence::new("a.b$c", 1).field, "fences.a_b_c");
    }

    #[test]
    fn tokens_are_read_whatever_numeric_type_the_backend_stored() {
        assert_eq!(as_i64(&Bson::Int32(3)), Some(3));
        assert_eq!(as_i64(&Bson::Int64(4)), Some(4));
        assert_eq!(as_i64(&Bson::Double(5.0)), Some(5));
        assert_eq!(as_i64(&Bson::Double(5.5)), None);
        assert_eq!(as_i64(&Bson::String("6".into())), None);
    }
}
