//! Inserting, finding, updating and deleting documents.

use bson::doc;
use keel::store::FindOptions;

conformance!(inserted_document_is_found_by_id, |store| {
    let items = store.collection("items");
    let id = items.insert_one(doc! {"name": "lamp", "price": 12}).await?;
    let found = items
        .find_one(doc! {"_id": id.clone()}, FindOptions::default())
        .await?
        .ok_or_else(|| anyhow::anyhow!("inserted document not found"))?;
    assert_eq!(found, doc! {"_id": id, "name": "lamp", "price": 12});
    Ok(())
});
