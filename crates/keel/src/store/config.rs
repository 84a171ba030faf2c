//! `[database]`: which database, and how keel talks to it.

use serde::{Deserialize, Serialize};

use crate::secrets::Secret;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `embedded://./data` (default) or `mongodb://user:pass@host/db?replicaSet=rs0`.
    /// A secret: a MongoDB URL carries credentials.
    pub url: Secret,
    /// Run `migrate` (create every declared index) when `serve` starts.
    pub migrate_on_start: bool,
    /// MongoDB: connection pool bounds.
    pub max_pool_size: u32,
    pub min_pool_size: u32,
    /// MongoDB: connect and server-selection timeouts.
    pub connect_timeout_ms: u64,
    pub server_selection_timeout_ms: u64,
    /// Refuse to start on a MongoDB that cannot serve change streams (not a replica set).
    pub require_change_streams: bool,
    /// Embedded: how long and how many change events the change log keeps for resuming watchers.
    pub change_retention_hours: u64,
    pub change_retention_events: u64,
    /// Embedded: how often expired documents of TTL indexes are deleted.
    pub ttl_sweep_interval_ms: u64,
    /// Embedded: read connections in the pool.
    pub read_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("embedded://./data"),
            migrate_on_start: true,
            max_pool_size: 20,
            min_pool_size: 0,
            connect_timeout_ms: 10_000,
            server_selection_timeout_ms: 30_000,
            require_change_streams: true,
            change_retention_hours: 24,
            change_retention_events: 1_000_000,
            ttl_sweep_interval_ms: 60_000,
            read_connections: 4,
        }
    }
}
