//! Translations from the store's vocabulary to the driver's: client options from `[database]`,
//! find/update/index options from the store's option types, and the replica-set check.
//!
//! Kept free of I/O so every rule here is unit-tested without a server.

use std::time::Duration;

use bson::Document;
use mongodb::IndexModel;
use mongodb::event::EventHandler;
use mongodb::event::cmap::CmapEvent;
use mongodb::event::sdam::SdamEvent;
use mongodb::options::{self as driver, ClientOptions, IndexOptions};

use crate::store::{
    DatabaseConfig, FindOneAndUpdateOptions, FindOptions, IndexSpec, ReturnDocument, StoreError,
    StoreResult, UpdateOptions,
};

/// The database used when the URL names none (`mongodb://host:27017`).
pub const DEFAULT_DATABASE: &str = "keel";
/// What the server sees as the client's name (`appName`), unless the URL sets one.
pub const APP_NAME: &str = "keel";

/// Parses `database.url` and applies the `[database]` settings over it. The URL is a secret:
/// errors describe the problem, never repeat the URL.
pub async fn client_options(config: &DatabaseConfig) -> StoreResult<ClientOptions> {
    let mut options = ClientOptions::parse(config.url.expose())
        .await
        .map_err(|e| {
            StoreError::invalid(format!(
                "database.url is not a usable MongoDB connection string: {}",
                e.kind
            ))
        })?;
    apply_config(&mut options, config)?;
    Ok(options)
}

/// Pool bounds, timeouts, retryable reads and writes, the app name and the event loggers.
pub fn apply_config(options: &mut ClientOptions, config: &DatabaseConfig) -> StoreResult<()> {
    if config.max_pool_size == 0 {
        return Err(StoreError::invalid(
            "database.max_pool_size must be at least 1",
        ));
    }
    if config.min_pool_size > config.max_pool_size {
        return Err(StoreError::invalid(format!(
            "database.min_pool_size ({}) is larger than database.max_pool_size ({})",
            config.min_pool_size, config.max_pool_size
        )));
    }
    options.max_pool_size = Some(config.max_pool_size);
    options.min_pool_size = Some(config.min_pool_size);
    options.connect_timeout = Some(Duration::from_millis(config.connect_timeout_ms));
    options.server_selection_timeout =
        Some(Duration::from_millis(config.server_selection_timeout_ms));
    options.retry_writes = Some(true);
    options.retry_reads = Some(true);
    if options.app_name.is_none() {
        options.app_name = Some(APP_NAME.to_string());
    }
    options.sdam_event_handler = Some(EventHandler::callback(log_topology_event));
    options.cmap_event_handler = Some(EventHandler::callback(log_pool_event));
    Ok(())
}

/// The hosts of the connection string, `host:port` comma-separated: what logs may show of it.
pub fn host_list(options: &ClientOptions) -> String {
    options
        .hosts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The database to use: the URL's path, else `keel`.
pub fn database_name(options: &ClientOptions) -> String {
    options
        .default_database
        .clone()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE.to_string())
}

/// Change streams need a replica set (or a mongos in front of one); `hello` says which it is.
pub fn check_change_stream_support(hello: &Document) -> StoreResult<()> {
    let is_replica_set = hello.get_str("setName").is_ok();
    let is_mongos = hello.get_str("msg").is_ok_and(|msg| msg == "isdbgrid");
    if is_replica_set || is_mongos {
        return Ok(());
    }
    Err(StoreError::unsupported(
        "change streams need a replica set: start mongod with --replSet rs0 and run \
         rs.initiate() once (a single-node replica set is fine), or set \
         database.require_change_streams = false if nothing watches collections",
    ))
}

pub fn find_options(options: FindOptions) -> driver::FindOptions {
    driver::FindOptions::builder()
        .sort(options.sort)
        .skip(options.skip)
        .limit(options.limit)
        .projection(options.projection)
        .build()
}

/// `find_one` takes the first document after `sort` and `skip`; a limit has no meaning there.
pub fn find_one_options(options: FindOptions) -> driver::FindOneOptions {
    driver::FindOneOptions::builder()
        .sort(options.sort)
        .skip(options.skip)
        .projection(options.projection)
        .build()
}

pub fn update_options(options: UpdateOptions) -> driver::UpdateOptions {
    driver::UpdateOptions::builder()
        .upsert(options.upsert)
        .build()
}

pub fn find_one_and_update_options(
    options: FindOneAndUpdateOptions,
) -> driver::FindOneAndUpdateOptions {
    let return_document = match options.return_document {
        ReturnDocument::Before => driver::ReturnDocument::Before,
        ReturnDocument::After => driver::ReturnDocument::After,
    };
    driver::FindOneAndUpdateOptions::builder()
        .upsert(options.upsert)
        .return_document(return_document)
        .sort(options.sort)
        .projection(options.projection)
        .build()
}

/// The index as MongoDB will build it. The name is always explicit (`IndexSpec::resolved_name`)
/// so both backends and `migrate` agree on it whatever the key values' types.
pub fn index_model(spec: &IndexSpec) -> StoreResult<IndexModel> {
    let name = spec.resolved_name();
    if spec.keys.is_empty() {
        return Err(StoreError::invalid(format!("index {name} has no keys")));
    }
    if let Some(ttl) = spec.expire_after {
        if spec.keys.len() != 1 {
            return Err(StoreError::invalid(format!(
                "TTL index {name} must have exactly one key (a date field)"
            )));
        }
        if ttl.subsec_nanos() != 0 {
            return Err(StoreError::invalid(format!(
                "TTL of index {name} must be whole seconds (MongoDB stores expireAfterSeconds)"
            )));
        }
    }
    let options = IndexOptions::builder()
        .name(name)
        .unique(spec.unique.then_some(true))
        .expire_after(spec.expire_after)
        .build();
    Ok(IndexModel::builder()
        .keys(spec.keys.clone())
        .options(options)
        .build())
}

fn log_topology_event(event: SdamEvent) {
    match event {
        SdamEvent::ServerDescriptionChanged(e) => tracing::debug!(
            server = %e.address,
            from = ?e.previous_description.server_type(),
            to = ?e.new_description.server_type(),
            "mongodb server description changed"
        ),
        SdamEvent::TopologyDescriptionChanged(e) => tracing::debug!(
            topology = %e.topology_id,
            from = ?e.previous_description.topology_type(),
            to = ?e.new_description.topology_type(),
            "mongodb topology changed"
        ),
        SdamEvent::ServerOpening(e) => {
            tracing::debug!(server = %e.address, "mongodb server opening")
        }
        SdamEvent::ServerClosed(e) => tracing::debug!(server = %e.address, "mongodb server closed"),
        SdamEvent::TopologyOpening(e) => {
            tracing::debug!(topology = %e.topology_id, "mongodb topology opening")
        }
        SdamEvent::TopologyClosed(e) => {
            tracing::debug!(topology = %e.topology_id, "mongodb topology closed")
        }
        SdamEvent::ServerHeartbeatFailed(e) => tracing::debug!(
            server = %e.server_address,
            error = %e.failure.kind,
            "mongodb heartbeat failed"
        ),
        // Heartbeats succeed every few seconds per server: trace, not debug.
        other => tracing::trace!(event = ?other, "mongodb heartbeat"),
    }
}

fn log_pool_event(event: CmapEvent) {
    match event {
        CmapEvent::PoolCreated(e) => tracing::debug!(server = %e.address, "mongodb pool created"),
        CmapEvent::PoolReady(e) => tracing::debug!(server = %e.address, "mongodb pool ready"),
        CmapEvent::PoolCleared(e) => tracing::debug!(server = %e.address, "mongodb pool cleared"),
        CmapEvent::PoolClosed(e) => tracing::debug!(server = %e.address, "mongodb pool closed"),
        CmapEvent::ConnectionCreated(e) => tracing::debug!(
            server = %e.address, connection = e.connection_id, "mongodb connection created"
        ),
        CmapEvent::ConnectionClosed(e) => tracing::debug!(
            server = %e.address,
            connection = e.connection_id,
            reason = ?e.reason,
            "mongodb connection closed"
        ),
        CmapEvent::ConnectionCheckoutFailed(e) => tracing::debug!(
            server = %e.address, reason = ?e.reason, "mongodb connection checkout failed"
        ),
        // Check-outs and check-ins happen on every operation: trace, not debug.
        other => tracing::trace!(event = ?other, "mongodb pool"),
    }
}

#[cfg(test)]
#[path = "options_tests.rs"]
mod tests;
