//! Middleware whose settings follow a configuration reload (SIGHUP) instead of being fixed
//! when the router is built. Today: CORS (`server.cors_origins`). Each request reads the
//! configuration in effect from the platform's `watch` channel; the CORS layer is rebuilt
//! only when a new configuration was published, not per request.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tower::{Layer, ServiceExt};
use tower_http::cors::CorsLayer;

use super::protect;
use crate::config::Config;

/// The CORS policy of the configuration in effect.
#[derive(Clone)]
pub struct ReloadableCors {
    config: watch::Receiver<Arc<Config>>,
    /// The configuration the layer was built from, and the layer (shared, not cloned, by each
    /// request: a `CorsLayer` holds several lists).
    built: Arc<Mutex<(Arc<Config>, Arc<CorsLayer>)>>,
}

impl ReloadableCors {
    pub fn new(config: watch::Receiver<Arc<Config>>) -> Self {
        let current = config.borrow().clone();
        let layer = Arc::new(protect::cors(&current));
        Self {
            config,
            built: Arc::new(Mutex::new((current, layer))),
        }
    }

    fn current(&self) -> Arc<CorsLayer> {
        let config = self.config.borrow().clone();
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if !Arc::ptr_eq(&built.0, &config) {
            let layer = Arc::new(protect::cors(&config));
            *built = (config, layer);
        }
        Arc::clone(&built.1)
    }
}

/// `from_fn_with_state(ReloadableCors::new(..), reloadable_cors)`: tower-http's CORS with the
/// policy of the moment.
pub async fn reloadable_cors(
    State(cors): State<ReloadableCors>,
    request: Request,
    next: Next,
) -> Response {
    match cors.current().layer(next).oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;
    use http::{Method, StatusCode, header};

    async fn preflight(app: &Router, origin: &str) -> Option<String> {
        let request = http::Request::builder()
            .method(Method::OPTIONS)
            .uri("/x")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn a_published_configuration_changes_the_allowed_origins() {
        let mut config = Config::default();
        config.server.cors_origins = vec!["https://old.example.com".into()];
        let (sender, receiver) = watch::channel(Arc::new(config.clone()));
        let app = Router::new()
            .route("/x", get(|| async { "x" }))
            .layer(from_fn_with_state(
                ReloadableCors::new(receiver),
                reloadable_cors,
            ));

        let old = "https://old.example.com";
        let new = "https://new.example.com";
        assert_eq!(preflight(&app, old).await.as_deref(), Some(old));
        assert_eq!(preflight(&app, new).await, None);

        config.server.cors_origins = vec![new.into()];
        sender.send_replace(Arc::new(config));
        assert_eq!(preflight(&app, new).await.as_deref(), Some(new));
        assert_eq!(preflight(&app, old).await, None);
    }
}
