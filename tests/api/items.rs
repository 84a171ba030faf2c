//! Brands and items over HTTP: brand validation (`hasValidBrand`), listing filters, ids, and the
//! guides' getData/createItem answering like the REST routes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_support::{Login, TestApp, body, expect_error, spawn_app};

async fn seeded() -> (TestApp, Login) {
    let app = spawn_app().await;
    let login = app.register("items@example.com").await;
    app.create_brand(&login, "Acme", true).await;
    app.create_brand(&login, "Retired", false).await;
    for (name, price) in [
        ("Anvil", 19.99),
        ("Rocket", 250.0),
        ("Skates", 45.5),
        ("Magnet", 5.0),
    ] {
        let item = json!({"name": name, "brand": "Acme", "price": price, "tags": ["wile"]});
        let response = app.post("/api/items", &item, Some(&login.cookie)).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{name}");
    }
    (app, login)
}

fn names(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn creating_an_item_needs_a_login_and_an_existing_active_brand() {
    let (app, login) = seeded().await;
    let item = |brand: &str| json!({"name": "Widget", "brand": brand, "price": 1.5});
    expect_error(
        app.post("/api/items", &item("Acme"), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_error(
        app.post("/api/items", &item("Nope"), Some(&login.cookie))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable",
    )
    .await;
    expect_error(
        app.post("/api/items", &item("Retired"), Some(&login.cookie))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable",
    )
    .await;
    let created = app
        .post("/api/items", &item("Acme"), Some(&login.cookie))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = body(created).await;
    assert_eq!(created["data"]["brand"], "Acme");
    assert_eq!(created["data"]["price"], 1.5);
    let id = created["data"]["_id"].as_str().unwrap();
    let fetched = body(app.get(&format!("/api/items/{id}"), None).await).await;
    assert_eq!(fetched["data"], created["data"]);
}

#[tokio::test]
async fn brand_names_are_unique_and_validated() {
    let app = spawn_app().await;
    let login = app.register("brands@example.com").await;
    app.create_brand(&login, "Acme", true).await;
    let again = app
        .post("/api/brands", &json!({"name": "Acme"}), Some(&login.cookie))
        .await;
    expect_error(again, StatusCode::CONFLICT, "conflict").await;
    let empty = app
        .post("/api/brands", &json!({"name": "  "}), Some(&login.cookie))
        .await;
    expect_error(empty, StatusCode::BAD_REQUEST, "validation_failed").await;
    let listed = body(app.get("/api/brands", None).await).await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["data"][0]["active"], true);
}

#[tokio::test]
async fn listing_filters_sorts_and_pages_with_whitelisted_parameters() {
    let (app, _) = seeded().await;
    let all = body(app.get("/api/items", None).await).await;
    assert_eq!(all["total"], 4);
    let cheap = body(app.get("/api/items?maxPrice=20&sort=price", None).await).await;
    assert_eq!(names(&cheap), ["Magnet", "Anvil"]);
    let range = body(
        app.get("/api/items?minPrice=10&maxPrice=100&sort=-price", None)
            .await,
    )
    .await;
    assert_eq!(names(&range), ["Skates", "Anvil"]);
    let search = body(app.get("/api/items?q=KET", None).await).await;
    assert_eq!(names(&search), ["Rocket"]);
    let literal = body(app.get("/api/items?q=.*", None).await).await;
    assert_eq!(
        literal["total"], 0,
        "search text is matched literally, not as a regex"
    );
    let page = body(app.get("/api/items?sort=name&limit=2&skip=1", None).await).await;
    assert_eq!(names(&page), ["Magnet", "Rocket"]);
    assert_eq!(page["total"], 4);
    let by_brand = body(app.get("/api/items?brand=Retired", None).await).await;
    assert_eq!(by_brand["total"], 0);
}

#[tokio::test]
async fn bad_listing_parameters_are_400_with_every_problem() {
    let (app, _) = seeded().await;
    let bad = app
        .get("/api/items?limit=5000&sort=password&minPrice=abc", None)
        .await;
    let bad = expect_error(bad, StatusCode::BAD_REQUEST, "validation_failed").await;
    assert_eq!(
        bad["error"]["details"].as_array().unwrap().len(),
        3,
        "{bad}"
    );
    let unknown = app.get("/api/items?price[$gt]=1", None).await;
    expect_error(unknown, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn an_invalid_object_id_is_400_and_an_unknown_one_404() {
    let (app, _) = seeded().await;
    for bad in [
        "123",
        "not-an-id",
        "507F1F77BCF86CD799439011",
        "%7B%22%24ne%22%3A1%7D",
    ] {
        let response = app.get(&format!("/api/items/{bad}"), None).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            response.text().await.unwrap()
        );
    }
    let missing = app.get("/api/items/507f1f77bcf86cd799439011", None).await;
    expect_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn get_data_and_create_item_answer_like_the_rest_routes() {
    let (app, login) = seeded().await;
    let rest = body(app.get("/api/items?minPrice=10&maxPrice=100", None).await).await;
    let guides = app
        .post(
            "/api/getData",
            &json!({"filter": {"price": {"$gte": 10, "$lte": 100}}, "limit": 100}),
            Some(&login.cookie),
        )
        .await;
    assert_eq!(guides.status(), StatusCode::OK);
    let guides = body(guides).await;
    let ids = |list: &Value| {
        let mut ids: Vec<String> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(&guides),
        ids(&rest),
        "the same items through both doors"
    );
    assert!(
        guides.get("total").is_none(),
        "getData answers like the guides: data only"
    );

    let limited = body(
        app.post(
            "/api/getData",
            &json!({"filter": {"brand": {"$in": ["Acme"]}}, "limit": 2}),
            Some(&login.cookie),
        )
        .await,
    )
    .await;
    assert_eq!(limited["data"].as_array().unwrap().len(), 2);

    let item = json!({"name": "Parity", "brand": "Acme", "price": 3.0});
    let legacy = app
        .post("/api/createItem", &item, Some(&login.cookie))
        .await;
    assert_eq!(legacy.status(), StatusCode::CREATED);
    let legacy = body(legacy).await;
    let rest = body(app.post("/api/items", &item, Some(&login.cookie)).await).await;
    let strip = |mut v: Value| {
        v["data"]
            .as_object_mut()
            .unwrap()
            .retain(|k, _| k != "_id" && k != "createdAt");
        v
    };
    assert_eq!(strip(legacy), strip(rest));
    let refused = app
        .post(
            "/api/createItem",
            &json!({"name": "X", "brand": "Retired", "price": 1}),
            Some(&login.cookie),
        )
        .await;
    expect_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable").await;
    expect_error(
        app.post("/api/getData", &json!({}), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

/// A page read again is answered from the rendering a thread kept, sent beside the response's
/// buffer rather than copied in (`JsonTextWriter::share`; debug builds render it again,
/// compare, and answer with the kept one): the same bytes, with a `content-length` that is
/// theirs, on both listing doors and on keep-alive connections that go on after it.
#[tokio::test]
async fn a_page_read_again_is_answered_byte_for_byte_with_its_length() {
    let (app, login) = seeded().await;
    let reads = [
        app.request(
            reqwest::Method::GET,
            "/api/items?limit=3",
            Some(&login.cookie),
        ),
        app.request(reqwest::Method::POST, "/api/getData", Some(&login.cookie))
            .json(&json!({"limit": 3})),
    ];
    for read in reads {
        let mut first = None;
        for _ in 0..6 {
            let response = read.try_clone().unwrap().send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let length: usize = response.headers()["content-length"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let bytes = response.bytes().await.unwrap();
            assert_eq!(bytes.len(), length);
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            assert!(text.starts_with(r#"{"data":[{"#), "{text}");
            let first = first.get_or_insert(text.clone());
            assert_eq!(&text, first);
        }
        let list: Value = serde_json::from_str(&first.unwrap()).unwrap();
        assert_eq!(list["data"].as_array().unwrap().len(), 3);
    }
}

#[tokio::test]
async fn items_created_through_the_api_are_processed_by_the_process_data_task() {
    use keel::tasks::{Task, TaskConfig, TaskContext};
    use keel_app::items::task::{PROCESS_DATA, ProcessData};

    let (app, _) = seeded().await;
    let context = TaskContext::detached(
        PROCESS_DATA,
        TaskConfig::default(),
        tokio_util::sync::CancellationToken::new(),
    );
    let summary = ProcessData::new(&app.store).run(&context).await.unwrap();
    assert_eq!((summary.processed, summary.rejected), (4, 0));

    let items = app
        .store
        .collection("items")
        .find(bson::doc! {}, keel::store::FindOptions::default())
        .await
        .unwrap();
    assert_eq!(items.len(), 4);
    assert!(
        items
            .iter()
            .all(|i| i.get_bool("processed").ok() == Some(true))
    );
    let anvil = items
        .iter()
        .find(|i| i.get_str("name").ok() == Some("Anvil"))
        .unwrap();
    assert_eq!(anvil.get_str("slug").ok(), Some("anvil"));
    assert_eq!(anvil.get_i64("priceCents").ok(), Some(1999));
}
