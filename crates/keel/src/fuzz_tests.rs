//! Fuzz targets of the platform (docs/fuzzing.md): the JSON body path, the query engine,
//! stored-document decoding, the session cookie, `Idempotency-Key` and configuration loading.
//! Each runs `KEEL_FUZZ_CASES` inputs (2,000 in a plain `cargo test`).

use std::collections::HashMap;

use bson::{Bson, Document};
use http::{HeaderMap, HeaderValue, header::COOKIE};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::Value;

#[path = "../../../fuzz/support.rs"]
mod support;

use crate::config::{LoadOptions, load};
use crate::http::idempotency::{answer_existing, fingerprint, parse_key};
use crate::http::json::parse_body;
use crate::http::session::crypto::{SessionCipher, session_tokens};
use crate::secrets::Secret;
use crate::store::engine::{Filter, Pipeline, Update};
use crate::validation::json_guard;
use support::{framed_bson, input, run};

/// The body path of `ApiJson`: bounded parse, the operator guard, then serde's shape check
/// into a typical input (strings, numbers, a nested list, unknown fields refused).
#[test]
fn fuzz_json_body() {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Typical {
        name: Option<String>,
        price: Option<f64>,
        qty: Option<u32>,
        lines: Option<Vec<HashMap<String, Value>>>,
    }
    run("json_body", input("json_body"), |bytes| {
        if let Ok(value) = parse_body(&bytes) {
            let _ = json_guard::check(&value);
            let _ = serde_json::from_value::<Typical>(value);
        }
    });
}

/// Splits an input at 0xFE into JSON texts, read as extended JSON into BSON documents.
fn documents(bytes: &[u8]) -> Vec<Document> {
    bytes
        .split(|b| *b == 0xFE)
        .filter_map(|part| serde_json::from_slice::<Value>(part).ok())
        .filter_map(|value| match bson::serialize_to_bson(&value) {
            Ok(Bson::Document(d)) => Some(d),
            _ => None,
        })
        .collect()
}

/// Keys that steer the engine: fields, dotted and positional paths, and operators of every
/// kind (query, update, pipeline stage, accumulator, expression).
const KEYS: &[&str] = &[
    "a",
    "b",
    "tags",
    "_id",
    "a.b",
    "tags.0",
    "tags.$",
    "tags.$[]",
    "a.b.c",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$eq",
    "$ne",
    "$in",
    "$nin",
    "$exists",
    "$type",
    "$size",
    "$all",
    "$mod",
    "$regex",
    "$options",
    "$elemMatch",
    "$not",
    "$and",
    "$or",
    "$nor",
    "$expr",
    "$set",
    "$unset",
    "$inc",
    "$mul",
    "$min",
    "$max",
    "$push",
    "$addToSet",
    "$pull",
    "$pop",
    "$each",
    "$slice",
    "$sort",
    "$position",
    "$rename",
    "$setOnInsert",
    "$currentDate",
    "$match",
    "$project",
    "$group",
    "$unwind",
    "$limit",
    "$skip",
    "$count",
    "$addFields",
    "$sum",
    "$avg",
    "$first",
    "$last",
    "$add",
    "$multiply",
    "$concat",
    "$cond",
    "$ifNull",
    "path",
    "$a",
    "$tags",
    "",
];

/// Arbitrary BSON shaped like queries: scalars of every comparable type, arrays and
/// documents keyed from `KEYS`, nested a few levels.
fn bson_value() -> impl Strategy<Value = Bson> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<f64>().prop_map(Bson::Double),
        prop_oneof![Just(""), Just("a"), Just("$a"), Just(".*"), Just("é\u{0}")]
            .prop_map(|t: &str| Bson::String(t.to_owned())),
        any::<bool>().prop_map(Bson::Boolean),
        Just(Bson::Null),
        any::<i64>().prop_map(|ms| Bson::DateTime(bson::DateTime::from_millis(ms))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Bson::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(
                |pairs| {
                    Bson::Document(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }
            ),
        ]
    })
}

fn bson_document() -> impl Strategy<Value = Document> {
    proptest::collection::vec((proptest::sample::select(KEYS), bson_value()), 0..6)
        .prop_map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Runs `spec` as a filter, an update and (its `pipeline` array, or itself as one stage) a
/// pipeline against `targets`.
fn exercise_engine(spec: &Document, targets: &[Document]) {
    let now = bson::DateTime::from_millis(1_700_000_000_000);
    if let Ok(filter) = Filter::parse(spec) {
        for target in targets {
            let _ = filter.matches(target);
        }
        let mut seed = filter.upsert_seed();
        if let Some(update) = targets.first().and_then(|u| Update::parse(u).ok()) {
            let _ = update.apply(&mut seed, true, now);
        }
    }
    if let Ok(update) = Update::parse(spec) {
        for target in targets {
            let _ = update.apply(&mut target.clone(), false, now);
        }
    }
    let stages: Vec<Document> = match spec.get_array("pipeline") {
        Ok(stages) => stages
            .iter()
            .filter_map(|s| s.as_document().cloned())
            .collect(),
        Err(_) => vec![spec.clone()],
    };
    if let Ok(pipeline) = Pipeline::parse(&stages) {
        let _ = pipeline.run(targets.to_vec());
    }
}

/// The query engine: filters, updates and pipelines parsed and evaluated against documents —
/// half the inputs from the mutated JSON corpus, half generated as BSON trees keyed with
/// operators, so most inputs get past parsing into evaluation.
#[test]
fn fuzz_query_engine() {
    let inputs = prop_oneof![
        input("query_engine").prop_map(|bytes| documents(&bytes)),
        proptest::collection::vec(bson_document(), 1..5),
    ];
    run("query_engine", inputs, |parts| {
        if let Some((spec, targets)) = parts.split_first() {
            exercise_engine(spec, targets);
        }
    });
}

/// Documents read back from the store are hostile too: BSON decoding, keel's raw field
/// reader (listings), and every field it yields.
#[test]
fn fuzz_stored_documents() {
    run("stored_documents", input("stored_documents"), |bytes| {
        for bytes in [bytes.clone(), framed_bson(bytes)] {
            let _ = Document::from_reader(&bytes[..]);
            if let Ok(fields) = crate::store::raw::fields(&bytes) {
                for field in fields {
                    let _ = field;
                }
            }
        }
    });
}

/// The session cookie: every `Cookie` header shape, and a stored record's sealed data.
#[test]
fn fuzz_session_cookie() {
    let cipher = SessionCipher::new(&Secret::new("fuzz-session-secret-0123456789abcdef"));
    run("session_cookie", input("session_cookie"), |bytes| {
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let mut headers = HeaderMap::new();
            headers.append(COOKIE, value);
            let _ = session_tokens(&headers, "sessionId");
        }
        let _ = cipher.open("record", &bytes);
    });
}

/// `Idempotency-Key` headers, and a stored idempotency record replayed from the store.
#[test]
fn fuzz_idempotency_key() {
    let print = fingerprint("POST", "/api/orders", b"{}");
    run("idempotency_key", input("idempotency_key"), |bytes| {
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let _ = parse_key(&value);
        }
        if let Ok(record) = Document::from_reader(&bytes[..]) {
            let _ = answer_existing(&record, &print);
        }
        for record in documents(&bytes) {
            let _ = answer_existing(&record, &print);
        }
    });
}

/// Configuration: the input as `default.toml`, and as `KEEL_*` variables (`NAME=value`
/// lines).
#[test]
fn fuzz_config() {
    // On tmpfs where there is one: a million file writes should not wait for a disk.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("temporary directory");
    run("config", input("config"), |bytes| {
        let text = String::from_utf8_lossy(&bytes);
        std::fs::write(dir.path().join("default.toml"), text.as_bytes()).expect("write");
        let env_vars = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (format!("KEEL_{}", k.trim()), v.to_owned()))
            .collect();
        let _ = load(&LoadOptions {
            config_dir: dir.path().to_path_buf(),
            config_dir_required: true,
            env_vars,
            overrides: Vec::new(),
        });
    });
}
