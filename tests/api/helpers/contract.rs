//! The API contract, checked on every response the API suite gets: the served OpenAPI document
//! must document each status a route answers, and each JSON body must validate against the
//! schema documented for that status.
//!
//! Every `TestApp` that runs the API role serves the application with one more layer (`checked`)
//! outside all of keel's: it sees each request and the response exactly as the client gets it,
//! whichever way the test sent the request (`TestApp::get`, `request(…).send()`, `client`
//! directly). Nothing is changed on the way: a response that breaks the contract is recorded,
//! and `assert_contract_kept` (called when the test's `TestApp` is dropped) fails the test with
//! every violation — method, path, status and what is wrong. Paths outside `/api` (the ops
//! pages, `/metrics`, the test-only `/__test` routes) and the probes, which answer their own
//! shape, are not part of the document and are not checked; an `/api` path no route serves must
//! answer 404 or 405.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

/// Paths under `/api` that are not part of the document: the probes (`keel::http::probes`).
const UNDOCUMENTED_API_PATHS: &[&str] = &["/api/health", "/api/ready"];

/// The served document, compiled for checking responses.
pub struct Contract {
    document: Value,
    /// Path templates split into segments (`{id}` matches any one segment).
    templates: Vec<(String, Vec<String>)>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    violations: Mutex<Vec<String>>,
}

impl Contract {
    pub fn new(document: Value) -> Contract {
        let templates = document["paths"]
            .as_object()
            .expect("the document has paths")
            .keys()
            .map(|template| (template.clone(), segments(template)))
            .collect();
        Contract {
            document,
            templates,
            validators: Mutex::new(HashMap::new()),
            violations: Mutex::new(Vec::new()),
        }
    }

    /// Checks one response: `Ok` when the route is not in the contract or the response keeps
    /// it, otherwise what is wrong.
    pub fn check(&self, method: &str, path: &str, status: u16, body: &[u8]) -> Result<(), String> {
        let path = path.split('?').next().unwrap_or(path);
        if !path.starts_with("/api/") || UNDOCUMENTED_API_PATHS.contains(&path) {
            return Ok(());
        }
        let is_head = method == "HEAD";
        let method = match method {
            "HEAD" => "get",
            "OPTIONS" => return Ok(()),
            other => &other.to_ascii_lowercase(),
        };
        let Some(template) = self.template_of(path) else {
            return match status {
                404 | 405 => Ok(()),
                _ => Err(format!(
                    "answered {status} on a path the document does not have"
                )),
            };
        };
        let Some(operation) = self.document["paths"][template].get(method) else {
            return match status {
                405 => Ok(()),
                _ => Err(format!(
                    "answered {status} to a method {template} does not document"
                )),
            };
        };
        let Some(response) = operation["responses"].get(status.to_string()) else {
            let documented: Vec<&String> = operation["responses"]
                .as_object()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            return Err(format!(
                "status {status} is not documented for {method} {template} (documented: {documented:?})"
            ));
        };
        let response = self.resolve(response);
        let Some(schema) = response["content"]["application/json"].get("schema") else {
            return Ok(());
        };
        if is_head {
            // No body: the status is all there is to check.
            return Ok(());
        }
        let instance: Value = serde_json::from_slice(body).map_err(|e| {
            format!(
                "documented as JSON but the body is not JSON ({e}): {}",
                String::from_utf8_lossy(body)
            )
        })?;
        let key = format!("{method} {template} {status}");
        let validator = self.validator(&key, schema)?;
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("at `{}`: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the body does not match the documented schema: {}\nbody: {}",
                errors.join("; "),
                truncated(&instance.to_string())
            ))
        }
    }

    /// Records a violation for `assert_kept`.
    fn record(&self, violation: String) {
        self.violations
            .lock()
            .expect("the violations lock is never poisoned")
            .push(violation);
    }

    /// Panics with every recorded violation.
    pub fn assert_kept(&self) {
        let violations = self
            .violations
            .lock()
            .expect("the violations lock is never poisoned");
        assert!(
            violations.is_empty(),
            "responses that break the OpenAPI contract ({}):\n{}",
            violations.len(),
            violations.join("\n")
        );
    }

    /// The template of `path` with the most literal segments.
    fn template_of(&self, path: &str) -> Option<&str> {
        let concrete = segments(path);
        self.templates
            .iter()
            .filter(|(_, template)| {
                template.len() == concrete.len()
                    && template
                        .iter()
                        .zip(&concrete)
                        .all(|(t, c)| t == c || (t.starts_with('{') && !c.is_empty()))
            })
            .max_by_key(|(_, template)| template.iter().filter(|t| !t.starts_with('{')).count())
            .map(|(name, _)| name.as_str())
    }

    /// A response object, following a `$ref` to `#/components/responses/…`.
    fn resolve<'a>(&'a self, response: &'a Value) -> &'a Value {
        match response.get("$ref").and_then(Value::as_str) {
            Some(reference) => self
                .document
                .pointer(reference.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("the document has no {reference}")),
            None => response,
        }
    }

    /// A validator for `schema`, its `$ref`s resolved against the document's components.
    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let mut validators = self
            .validators
            .lock()
            .expect("the validators lock is never poisoned");
        if let Some(validator) = validators.get(key) {
            return Ok(validator.clone());
        }
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.document["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::validator_for(&root)
            .map(Arc::new)
            .map_err(|e| format!("the documented schema does not compile: {e}"))?;
        validators.insert(key.to_owned(), validator.clone());
        Ok(validator)
    }
}

fn segments(path: &str) -> Vec<String> {
    path.trim_start_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

fn truncated(text: &str) -> String {
    match text.char_indices().nth(2000) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The contracts of the servers the tests started, by address: `TestApp` holds only the
/// address, and its `Drop` asks here.
fn contracts() -> &'static Mutex<HashMap<SocketAddr, Arc<Contract>>> {
    static CONTRACTS: OnceLock<Mutex<HashMap<SocketAddr, Arc<Contract>>>> = OnceLock::new();
    CONTRACTS.get_or_init(Default::default)
}

/// `router` (the application's, serving `document`) with every response checked against
/// `document`; the contract the checks record into.
pub fn checked(router: Router, document: Value) -> (Router, Arc<Contract>) {
    let contract = Arc::new(Contract::new(document));
    let checking = contract.clone();
    let router = router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let contract = checking.clone();
            async move { check_response(&contract, request, next).await }
        },
    ));
    (router, contract)
}

/// Keeps `contract` for the server listening at `address`, for `assert_contract_kept`.
pub fn keep(address: SocketAddr, contract: Arc<Contract>) {
    contracts()
        .lock()
        .expect("the contracts lock is never poisoned")
        .insert(address, contract);
}

/// Fails the test with every response of the server at `address` that broke the contract
/// (nothing when it serves no API, or when the test is already failing).
pub fn assert_contract_kept(address: SocketAddr) {
    let contract = contracts()
        .lock()
        .expect("the contracts lock is never poisoned")
        .remove(&address);
    if let Some(contract) = contract
        && !std::thread::panicking()
    {
        contract.assert_kept();
    }
}

async fn check_response(contract: &Contract, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let checked = path.starts_with("/api/") && !UNDOCUMENTED_API_PATHS.contains(&path.as_str());
    let response = next.run(request).await;
    if !checked {
        return response;
    }
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            contract.record(format!("{method} {path} → {status}: reading the body: {e}"));
            return Response::from_parts(parts, Body::empty());
        }
    };
    let gzipped = parts
        .headers
        .get(axum::http::header::CONTENT_ENCODING)
        .is_some_and(|encoding| encoding == "gzip");
    let json = if gzipped {
        let mut text = Vec::new();
        match flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut text) {
            Ok(_) => text,
            Err(e) => {
                contract.record(format!("{method} {path} → {status}: bad gzip body: {e}"));
                Vec::new()
            }
        }
    } else {
        bytes.to_vec()
    };
    if let Err(violation) = contract.check(&method, &path, status, &json) {
        contract.record(format!("{method} {path} → {status}: {violation}"));
    }
    Response::from_parts(parts, Body::from(bytes))
}
