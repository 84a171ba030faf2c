//! Sessions validated recently, so a busy client does not cost a store read, a decryption and
//! a document decode on every request.
//!
//! What must stay true: an entry is trusted for at most `ttl` after the store said the session
//! exists (then the store is asked again), so a logout or expiry on another replica is
//! honoured within `ttl`; the caller still checks `expires_at` on every hit; a logout here
//! removes the entry before the record. Memory is bounded: at most `capacity` entries; a full
//! cache first drops stale entries, then everything (the next requests simply read the store).
//! Only sessions the store confirmed are cached: forged or unknown tokens never take a slot.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ActiveSession;

pub(super) struct SessionCache {
    entries: Mutex<HashMap<String, Entry>>,
    ttl: Duration,
    capacity: usize,
}

struct Entry {
    session: ActiveSession,
    checked_at: Instant,
}

impl SessionCache {
    pub(super) fn new(ttl: Duration, capacity: usize) -> SessionCache {
        SessionCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere cannot leave an entry half-written: inserts and removes are whole.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_disabled(&self) -> bool {
        self.ttl.is_zero() || self.capacity == 0
    }

    /// The session of `record_id` if the store confirmed it less than `ttl` before `now`.
    pub(super) fn get(&self, record_id: &str, now: Instant) -> Option<ActiveSession> {
        if self.is_disabled() {
            return None;
        }
        let mut entries = self.lock();
        let entry = entries.get(record_id)?;
        if now.saturating_duration_since(entry.checked_at) < self.ttl {
            return Some(entry.session.clone());
        }
        entries.remove(record_id);
        None
    }

    /// Remembers a session the store confirmed at `checked_at`.
    pub(super) fn put(&self, session: ActiveSession, checked_at: Instant) {
        if self.is_disabled() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&session.record_id) {
            let ttl = self.ttl;
            entries.retain(|_, e| checked_at.saturating_duration_since(e.checked_at) < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(
            session.record_id.clone(),
            Entry {
                session,
                checked_at,
            },
        );
    }

    /// The session was touched (its expiry pushed forward) by this process.
    pub(super) fn touched(
        &self,
        record_id: &str,
        touched_at: bson::DateTime,
        expires_at: bson::DateTime,
    ) {
        if let Some(entry) = self.lock().get_mut(record_id) {
            entry.session.touched_at = touched_at;
            entry.session.expires_at = expires_at;
        }
    }

    pub(super) fn remove(&self, record_id: &str) {
        if !self.is_disabled() {
            self.lock().remove(record_id);
        }
    }

    /// Forgets every session of `user_id` (log out everywhere).
    pub(super) fn remove_user(&self, user_id: &str) {
        if !self.is_disabled() {
            self.lock().retain(|_, e| e.session.user_id != user_id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> ActiveSession {
        ActiveSession {
            record_id: id.to_owned(),
            user_id: format!("user-{id}"),
            expires_at: bson::DateTime::MAX,
            absolute_expires_at: bson::DateTime::MAX,
            touched_at: bson::DateTime::now(),
        }
    }

    #[test]
    fn an_entry_is_trusted_for_the_ttl_and_no_longer() {
        let cache = SessionCache::new(Duration::from_secs(2), 10);
        let t0 = Instant::now();
        cache.put(session("a"), t0);
        let hit = cache.get("a", t0 + Duration::from_millis(1999)).unwrap();
        assert_eq!(hit.user_id, "user-a");
        assert!(cache.get("a", t0 + Duration::from_secs(2)).is_none());
        assert!(
            cache.get("a", t0).is_none(),
            "a stale entry is dropped, not kept for later"
        );
    }

    #[test]
    fn a_removed_session_is_gone_at_once() {
        let cache = SessionCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        cache.put(session("a"), t0);
        cache.remove("a");
        assert!(cache.get("a", t0).is_none());
    }

    #[test]
    fn memory_stays_bounded_by_the_capacity() {
        let cache = SessionCache::new(Duration::from_secs(60), 100);
        let t0 = Instant::now();
        for n in 0..10_000 {
            cache.put(session(&n.to_string()), t0);
            assert!(cache.len() <= 100);
        }
        assert!(
            cache.get("9999", t0).is_some(),
            "the newest entry is always kept"
        );
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = SessionCache::new(Duration::ZERO, 100);
        let t0 = Instant::now();
        cache.put(session("a"), t0);
        assert!(cache.get("a", t0).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_touch_moves_the_cached_expiry() {
        let cache = SessionCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        cache.put(session("a"), t0);
        let later = bson::DateTime::from_millis(42);
        cache.touched("a", later, later);
        assert_eq!(cache.get("a", t0).unwrap().expires_at, later);
    }
}
