//! `/api/openapi.json`: an OpenAPI 3.1 document generated from the route declarations. Every
//! route of the API contract is in it, and every path in it is served.

use reqwest::{Method, StatusCode};

use crate::api_support::{body, spawn_app};

/// The API's routes as DESIGN §5 and the API issue list them.
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/api/auth/register"),
    ("post", "/api/auth/login"),
    ("post", "/api/auth/logout"),
    ("get", "/api/auth/me"),
    ("get", "/api/brands"),
    ("post", "/api/brands"),
    ("get", "/api/items"),
    ("post", "/api/items"),
    ("get", "/api/items/{id}"),
    ("post", "/api/getData"),
    ("post", "/api/createItem"),
    ("post", "/api/orders"),
    ("get", "/api/orders"),
    ("get", "/api/orders/{id}"),
    ("post", "/api/surveys"),
    ("post", "/api/surveys/{id}/complete"),
    ("get", "/api/surveys/stats"),
    ("get", "/api/openapi.json"),
];

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let app = spawn_app().await;
    let response = app.get("/api/openapi.json", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let document = body(response).await;
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        document["openapi"]
    );
    let paths = document["paths"].as_object().unwrap();
    for (method, path) in CONTRACT {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} is not documented"
        );
    }
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", "507f1f77bcf86cd799439011");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .request(method.clone(), &concrete, None)
                .send()
                .await
                .unwrap();
            assert_ne!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            if response.status() == StatusCode::NOT_FOUND {
                let error = body(response).await;
                assert_ne!(
                    error["error"]["message"], "no route for this path",
                    "{method} {path} is not served"
                );
            }
        }
    }
    assert!(document["components"]["securitySchemes"]["session"].is_object());
}
