//! The OpenAPI contract: what the served document says about the answers clients get, and the
//! check (`helpers/contract.rs`) that holds every response of this suite to it — shown here
//! to fail on an undocumented status and on a body of the wrong shape.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_support::{body, spawn_app};
use crate::helpers::contract::Contract;

const ITEM: &str = r#"{"_id":"665f1f77bcf86cd799439011","brand":"Acme","createdAt":"2026-01-02T03:04:05Z","name":"Anvil","price":19.99,"tags":[]}"#;

async fn served_document() -> Value {
    let app = spawn_app().await;
    let response = app.get("/api/openapi.json", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await
}

#[tokio::test]
async fn the_check_refuses_an_undocumented_status_and_a_body_of_another_shape() {
    let contract = Contract::new(served_document().await);
    let page = format!(r#"{{"data":[{ITEM}],"success":true,"total":1}}"#);
    contract
        .check("GET", "/api/items?limit=1", 200, page.as_bytes())
        .expect("a real page of items keeps the contract");

    let undocumented = contract.check("GET", "/api/items", 418, b"{}").unwrap_err();
    assert!(
        undocumented.contains("status 418 is not documented"),
        "{undocumented}"
    );

    let bare_array = format!("[{ITEM}]");
    let wrong = contract
        .check("GET", "/api/items", 200, bare_array.as_bytes())
        .unwrap_err();
    assert!(
        wrong.contains("does not match the documented schema"),
        "{wrong}"
    );

    let without_total = format!(r#"{{"data":[{ITEM}],"success":true}}"#);
    assert!(
        contract
            .check("GET", "/api/items", 200, without_total.as_bytes())
            .is_err(),
        "a list without `total`"
    );
    let missing_price = r#"{"data":{"_id":"665f1f77bcf86cd799439011","brand":"Acme","createdAt":"x","name":"A","tags":[]},"success":true}"#;
    assert!(
        contract
            .check(
                "GET",
                "/api/items/665f1f77bcf86cd799439011",
                200,
                missing_price.as_bytes()
            )
            .is_err(),
        "an item without its price"
    );
    let plain_text_error = contract
        .check("POST", "/api/items", 415, b"unsupported media type")
        .unwrap_err();
    assert!(plain_text_error.contains("not JSON"), "{plain_text_error}");
    assert!(
        contract
            .check(
                "POST",
                "/api/brands",
                201,
                br#"{"success":false,"error":{"code":"teapot","message":"x"}}"#
            )
            .is_err(),
        "an error envelope where the created brand belongs"
    );
    contract
        .check(
            "DELETE",
            "/api/items",
            405,
            br#"{"success":false,"error":{"code":"method_not_allowed","message":"method not allowed"}}"#,
        )
        .expect("a method no route serves is 405, not part of the document");
    assert!(
        contract.check("GET", "/api/nowhere", 200, b"{}").is_err(),
        "a 200 from a path the document does not have"
    );
}

/// The issue's examples: lists are envelopes with `total`, 415 and 429 are documented, and the
/// request schemas say what the server enforces.
#[tokio::test]
async fn the_document_describes_envelopes_statuses_and_request_limits() {
    let document = served_document().await;
    let operation = |method: &str, path: &str| document["paths"][path][method].clone();
    let component = |schema: &Value| match schema["$ref"].as_str() {
        Some(reference) => document
            .pointer(reference.trim_start_matches('#'))
            .cloned()
            .unwrap_or_else(|| panic!("no {reference}")),
        None => schema.clone(),
    };
    let schema_of =
        |response: &Value| component(&response["content"]["application/json"]["schema"]);

    let list = schema_of(&operation("get", "/api/items")["responses"]["200"]);
    assert_eq!(
        list["required"],
        json!(["data", "success", "total"]),
        "{list}"
    );
    assert_eq!(list["properties"]["data"]["type"], "array", "{list}");
    assert_eq!(
        list["properties"]["data"]["items"]["$ref"],
        "#/components/schemas/ItemView"
    );

    let create = operation("post", "/api/items");
    for status in [
        "201", "400", "401", "403", "413", "415", "422", "429", "500", "503",
    ] {
        assert!(
            create["responses"].get(status).is_some(),
            "POST /api/items does not document {status}: {}",
            create["responses"]
        );
    }
    assert_eq!(
        create["responses"]["415"]["$ref"],
        "#/components/responses/UnsupportedMediaType"
    );
    assert!(
        document["components"]["responses"]["UnsupportedMediaType"]["content"]["application/json"]
            ["schema"]["$ref"]
            == "#/components/schemas/ErrorBody"
    );

    let item = &document["components"]["schemas"]["CreateItemRequest"];
    assert_eq!(item["additionalProperties"], false, "{item}");
    assert_eq!(
        item["required"],
        json!(["name", "brand", "price"]),
        "{item}"
    );
    assert_eq!(item["properties"]["name"]["maxLength"], 200, "{item}");
    assert_eq!(item["properties"]["price"]["maximum"], 1_000_000, "{item}");
    assert_eq!(item["properties"]["tags"]["maxItems"], 20, "{item}");

    let credentials = &document["components"]["schemas"]["CredentialsRequest"];
    assert_eq!(credentials["properties"]["password"]["minLength"], 12);
    let line = &document["components"]["schemas"]["OrderLineRequest"];
    assert_eq!(line["properties"]["qty"]["maximum"], 10_000, "{line}");
    assert!(line["properties"]["sku"]["pattern"].is_string(), "{line}");
}
