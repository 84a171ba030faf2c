use std::time::Duration;

use bson::doc;

use super::*;
use crate::secrets::Secret;

fn config(url: &str) -> DatabaseConfig {
    DatabaseConfig {
        url: Secret::new(url),
        max_pool_size: 7,
        min_pool_size: 2,
        connect_timeout_ms: 1_500,
        server_selection_timeout_ms: 4_000,
        ..DatabaseConfig::default()
    }
}

#[tokio::test]
async fn config_settings_apply_over_the_url() {
    let options = client_options(&config(
        "mongodb://app:s3cret@db1:27017,db2:27018/shop?replicaSet=rs0&maxPoolSize=99",
    ))
    .await
    .expect("a valid URL");
    assert_eq!(options.max_pool_size, Some(7));
    assert_eq!(options.min_pool_size, Some(2));
    assert_eq!(options.connect_timeout, Some(Duration::from_millis(1_500)));
    assert_eq!(
        options.server_selection_timeout,
        Some(Duration::from_millis(4_000))
    );
    assert_eq!(options.retry_writes, Some(true));
    assert_eq!(options.retry_reads, Some(true));
    assert_eq!(options.app_name.as_deref(), Some("keel"));
    assert_eq!(options.repl_set_name.as_deref(), Some("rs0"));
    assert!(options.sdam_event_handler.is_some() && options.cmap_event_handler.is_some());
    assert_eq!(database_name(&options), "shop");
}

#[tokio::test]
async fn host_list_shows_hosts_and_never_credentials() {
    let options = client_options(&config("mongodb://app:s3cret@db1:27017,db2:27018/shop"))
        .await
        .expect("a valid URL");
    let hosts = host_list(&options);
    assert_eq!(hosts, "db1:27017,db2:27018");
    assert!(!hosts.contains("s3cret"));
}

#[tokio::test]
async fn url_without_database_uses_keel_and_app_name_from_url_wins() {
    let options = client_options(&config("mongodb://localhost/?appName=reports"))
        .await
        .expect("a valid URL");
    assert_eq!(database_name(&options), "keel");
    assert_eq!(options.app_name.as_deref(), Some("reports"));
}

#[tokio::test]
async fn bad_url_is_invalid_and_not_echoed() {
    let error = client_options(&config("mongodb://app:p@ss:word@db1:notaport/shop"))
        .await
        .expect_err("an invalid URL");
    match error {
        StoreError::InvalidQuery { reason } => {
            assert!(
                reason.starts_with("database.url is not a usable"),
                "{reason}"
            );
            assert!(!reason.contains("word@db1"), "{reason}");
        }
        other => panic!("expected InvalidQuery, got {other:?}"),
    }
}

#[tokio::test]
async fn impossible_pool_bounds_are_refused() {
    let mut inverted = config("mongodb://localhost");
    inverted.min_pool_size = 10;
    inverted.max_pool_size = 5;
    assert!(client_options(&inverted).await.is_err());
    let mut empty = config("mongodb://localhost");
    empty.max_pool_size = 0;
    assert!(client_options(&empty).await.is_err());
}

#[test]
fn replica_sets_and_mongos_serve_change_streams() {
    let replica_set = doc! { "isWritablePrimary": true, "setName": "rs0", "ok": 1.0 };
    assert!(check_change_stream_support(&replica_set).is_ok());
    let mongos = doc! { "isWritablePrimary": true, "msg": "isdbgrid", "ok": 1.0 };
    assert!(check_change_stream_support(&mongos).is_ok());
}

#[test]
fn a_standalone_server_is_refused_with_the_fix() {
    let standalone = doc! { "isWritablePrimary": true, "maxWireVersion": 21, "ok": 1.0 };
    match check_change_stream_support(&standalone) {
        Err(StoreError::Unsupported { what }) => {
            assert!(
                what.starts_with("change streams need a replica set"),
                "{what}"
            );
            assert!(what.contains("--replSet"), "{what}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn find_options_carry_every_field() {
    let options = find_options(
        FindOptions::default()
            .sort(doc! { "at": -1 })
            .skip(5)
            .limit(10)
            .projection(doc! { "name": 1 }),
    );
    assert_eq!(options.sort, Some(doc! { "at": -1 }));
    assert_eq!(options.skip, Some(5));
    assert_eq!(options.limit, Some(10));
    assert_eq!(options.projection, Some(doc! { "name": 1 }));
    let one = find_one_options(FindOptions::default().skip(2).limit(3));
    assert_eq!(one.skip, Some(2));
    assert_eq!(one.sort, None);
}

#[test]
fn find_one_and_update_options_map_return_document_and_upsert() {
    let options = find_one_and_update_options(FindOneAndUpdateOptions {
        upsert: true,
        return_document: ReturnDocument::After,
        sort: Some(doc! { "priority": -1 }),
        projection: None,
    });
    assert_eq!(options.upsert, Some(true));
    assert!(matches!(
        options.return_document,
        Some(driver::ReturnDocument::After)
    ));
    assert_eq!(options.sort, Some(doc! { "priority": -1 }));
    let before = find_one_and_update_options(FindOneAndUpdateOptions::default());
    assert!(matches!(
        before.return_document,
        Some(driver::ReturnDocument::Before)
    ));
    assert_eq!(
        update_options(UpdateOptions { upsert: true }).upsert,
        Some(true)
    );
}

fn index_document(spec: &IndexSpec) -> Document {
    bson::serialize_to_document(&index_model(spec).expect("a valid index"))
        .expect("index models serialize")
}

#[test]
fn unique_index_model_has_name_and_unique() {
    let spec = IndexSpec::new(doc! { "email": 1 }).unique();
    assert_eq!(
        index_document(&spec),
        doc! { "key": { "email": 1 }, "name": "email_1", "unique": true }
    );
}

#[test]
fn ttl_index_model_has_expire_after_seconds() {
    let spec = IndexSpec::new(doc! { "expiresAt": 1 }).ttl(Duration::from_secs(3600));
    assert_eq!(
        index_document(&spec),
        doc! { "key": { "expiresAt": 1 }, "expireAfterSeconds": 3600, "name": "expiresAt_1" }
    );
}

#[test]
fn compound_index_is_named_like_mongodb_unless_named() {
    let spec = IndexSpec::new(doc! { "owner": 1, "at": -1 });
    assert_eq!(
        index_document(&spec).get_str("name").ok(),
        Some("owner_1_at_-1")
    );
    let named = spec.named("by_owner");
    assert_eq!(
        index_document(&named).get_str("name").ok(),
        Some("by_owner")
    );
}

#[test]
fn impossible_indexes_are_refused_before_the_server() {
    assert!(index_model(&IndexSpec::new(doc! {})).is_err());
    let compound_ttl = IndexSpec::new(doc! { "a": 1, "b": 1 }).ttl(Duration::from_secs(60));
    assert!(index_model(&compound_ttl).is_err());
    let sub_second = IndexSpec::new(doc! { "a": 1 }).ttl(Duration::from_millis(1_500));
    assert!(index_model(&sub_second).is_err());
}
