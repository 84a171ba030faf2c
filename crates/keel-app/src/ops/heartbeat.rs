//! Heartbeats: every replica (whatever its roles) writes `{_id, host, pid, roles, version,
//! startedAt, lastSeenAt}` into `ops_instances` every `ops.heartbeat_interval_ms`, so the
//! console of any one replica lists them all. A replica that stops writing shows as stale after
//! three intervals and its record expires after `INSTANCE_RETENTION` (a TTL index).

use std::time::Duration;

use keel::Platform;

use super::model::Heartbeat;
use super::repository::OpsRepository;
use crate::Role;

/// Who this process is, fixed at start.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub roles: Vec<String>,
    pub started_at: bson::DateTime,
}

impl Instance {
    pub fn current(roles: &[Role]) -> Self {
        let host = hostname::get().map_or_else(
            |_| "unknown-host".to_owned(),
            |h| h.to_string_lossy().into_owned(),
        );
        let pid = i64::from(std::process::id());
        Instance {
            // Host and pid repeat across restarts and containers; the suffix does not.
            id: format!(
                "{host}:{pid}:{}",
                &bson::oid::ObjectId::new().to_hex()[18..]
            ),
            host,
            pid,
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            started_at: bson::DateTime::now(),
        }
    }

    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            id: self.id.clone(),
            host: self.host.clone(),
            pid: self.pid,
            roles: self.roles.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: self.started_at,
            last_seen_at: bson::DateTime::now(),
        }
    }
}

/// Writes the heartbeat now and then every interval until shutdown. A failed write is logged
/// (at most once per failure streak) and retried at the next beat.
pub fn start(platform: &Platform, repository: OpsRepository, instance: Instance) {
    let interval = Duration::from_millis(platform.config().ops.heartbeat_interval_ms.max(100));
    let token = platform.shutdown().token();
    platform.shutdown().spawn("ops-heartbeat", async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            match repository.beat(&instance.heartbeat()).await {
                Ok(()) => failing = false,
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "ops heartbeat not written; retrying each interval");
                }
                Err(_) => {}
            }
        }
    });
}
