//! Fuzz targets of the application (docs/fuzzing.md): getData's filter, from the raw body to
//! the store filter the engine evaluates. Each runs `KEEL_FUZZ_CASES` inputs (2,000 in a
//! plain `cargo test`).

#[path = "../../../fuzz/support.rs"]
mod support;

use bson::doc;
use keel::http::json::parse_body;
use keel::store::engine::Filter;
use support::{framed_bson, input, run};

use crate::items::filter::{GetDataRequest, guard};
use crate::items::repository::data_filter_document;

/// The whole getData input path: bounded parse, the operator-position guard, the request's
/// shape, the whitelist parser, the store filter it builds — which the engine must accept —
/// evaluated against a few items.
#[test]
fn fuzz_get_data_filter() {
    let items = [
        doc! {"_id": 1, "name": "Anvil", "brand": "Acme", "price": 19.99, "tags": ["a", "b"]},
        doc! {"_id": 2, "name": "", "price": -1, "tags": []},
        doc! {"_id": 3, "brand": {"x": 1}, "price": "12"},
    ];
    run("get_data_filter", input("get_data_filter"), |bytes| {
        let Ok(value) = parse_body(&bytes) else {
            return;
        };
        if guard(&value).is_err() {
            return;
        }
        let Ok(request) = serde_json::from_value::<GetDataRequest>(value) else {
            return;
        };
        let Ok(query) = request.parse() else {
            return;
        };
        let filter = data_filter_document(&query.filter);
        let parsed = Filter::parse(&filter)
            .unwrap_or_else(|e| panic!("the engine refused getData's own filter {filter}: {e}"));
        for item in &items {
            let _ = parsed.matches(item);
        }
    });
}

/// Stored items are input too: a listing renders whatever bytes the store returns — it must
/// answer an error for a malformed or mistyped item, never panic or emit broken JSON.
#[test]
fn fuzz_stored_items() {
    use crate::items::render::{StoredItem, item_array};

    run("stored_items", input("stored_items"), |bytes| {
        for bytes in [bytes.clone(), framed_bson(bytes)] {
            if let Ok(item) = StoredItem::read(&bytes) {
                let _ = item.tags();
            }
            if let Ok(document) = bson::RawDocumentBuf::from_bytes(bytes)
                && let Ok(rendered) = item_array(&[document])
            {
                serde_json::from_slice::<serde_json::Value>(&rendered.to_bytes())
                    .expect("a rendered listing is valid JSON");
            }
        }
    });
}
