//! `docs/openapi.json` (what `GET /openapi.json` serves) against the Worker's route table,
//! both ways: every route and method is documented, nothing is documented that the Worker
//! does not serve, and path parameters are named as the table names them. Whether the
//! answers match the document is for `scripts/schemathesis.sh`, against the running Worker.

use std::collections::BTreeSet;

use herald::route::{resolve, Route, ROUTES};
use serde_json::Value;

const DOC: &str = include_str!("../docs/openapi.json");

/// The operation keys of an OpenAPI path item.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn doc() -> Value {
    serde_json::from_str(DOC).expect("docs/openapi.json is valid JSON")
}

/// `(path, METHOD)` of every documented operation.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| (path.clone(), m.to_uppercase()))
        })
        .collect()
}

fn routed() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|(path, method, _)| (path.to_string(), method.to_string()))
        .collect()
}

/// Every operation with its path and method.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((path.clone(), m.to_uppercase(), op));
            }
        }
    }
    out
}

/// The `{…}` names in a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_owned)
        .collect()
}

/// Follows a local `$ref` (`#/components/…`).
fn resolve_ref<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(pointer) => {
            let target = doc
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{pointer} does not resolve"));
            resolve_ref(doc, target)
        }
        None => value,
    }
}

#[test]
fn it_is_an_openapi_3_1_document() {
    let doc = doc();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());
}

#[test]
fn every_route_is_documented() {
    let missing: Vec<_> = routed().difference(&documented(&doc())).cloned().collect();
    assert!(
        missing.is_empty(),
        "routes missing from docs/openapi.json: {missing:?}"
    );
}

#[test]
fn nothing_is_documented_that_the_worker_does_not_route() {
    let extra: Vec<_> = documented(&doc()).difference(&routed()).cloned().collect();
    assert!(extra.is_empty(), "documented but not in ROUTES: {extra:?}");
}

/// The table says which paths exist; `resolve` is what the Worker runs. A documented path,
/// with its parameters filled in, must reach the route the table names for it.
#[test]
fn every_documented_operation_resolves_to_its_route() {
    let doc = doc();
    for (path, method, _) in operations(&doc) {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "project:42" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let expected = ROUTES
            .iter()
            .find(|(p, m, _)| *p == path && *m == method)
            .map(|(_, _, r)| *r);
        let got = resolve(&method, &concrete).map(|r| r.route).ok();
        assert_eq!(got, expected, "{method} {concrete}");
    }
}

#[test]
fn path_parameters_match_the_templates() {
    let doc = doc();
    for (path, method, op) in operations(&doc) {
        let path_level = doc["paths"][&path]["parameters"].as_array();
        let op_level = op["parameters"].as_array();
        let documented: Vec<&Value> = path_level
            .into_iter()
            .chain(op_level)
            .flatten()
            .map(|p| resolve_ref(&doc, p))
            .filter(|p| p["in"] == "path")
            .collect();
        let names: BTreeSet<String> = documented
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, template_params(&path), "{method} {path}");
        for p in documented {
            assert_eq!(
                p["required"], true,
                "{method} {path}: path parameters are required"
            );
        }
    }
    // The table's own templates use exactly these names.
    let names: BTreeSet<String> = ROUTES
        .iter()
        .flat_map(|(p, _, _)| template_params(p))
        .collect();
    assert_eq!(names, BTreeSet::from(["id".to_owned(), "room".to_owned()]));
}

#[test]
fn every_reference_resolves() {
    fn walk(doc: &Value, value: &Value) {
        match value {
            Value::Object(map) => {
                if map.contains_key("$ref") {
                    resolve_ref(doc, value);
                }
                map.values().for_each(|v| walk(doc, v));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(doc, v)),
            _ => {}
        }
    }
    let doc = doc();
    walk(&doc, &doc);
}

#[test]
fn every_error_answer_is_the_error_schema() {
    let doc = doc();
    for (path, method, op) in operations(&doc) {
        let responses = op["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{method} {path}");
        for (status, response) in responses {
            let code: u16 = status.parse().expect("explicit status codes");
            if code < 400 {
                continue;
            }
            let response = resolve_ref(&doc, response);
            let schema = &response["content"]["application/json"]["schema"];
            assert_eq!(
                schema["$ref"], "#/components/schemas/Error",
                "{method} {path} {status}"
            );
        }
    }
}

#[test]
fn every_operation_names_known_security_schemes() {
    let doc = doc();
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for (path, method, op) in operations(&doc) {
        let security = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path}: say who may call it"));
        for requirement in security {
            for name in requirement.as_object().unwrap().keys() {
                assert!(schemes.contains_key(name), "{method} {path}: {name}");
            }
        }
    }
}

#[test]
fn websocket_routes_are_gets_answering_101_or_an_error() {
    let doc = doc();
    for (path, method, route) in ROUTES {
        if !matches!(route, Route::Connect | Route::RoomConnect) {
            continue;
        }
        assert_eq!(*method, "GET");
        let responses = &doc["paths"][*path]["get"]["responses"];
        for status in ["101", "401", "426"] {
            assert!(responses.get(status).is_some(), "{path} {status}");
        }
        let others: Vec<&String> = responses
            .as_object()
            .unwrap()
            .keys()
            .filter(|s| *s != "101" && !s.starts_with('4') && !s.starts_with('5'))
            .collect();
        assert!(others.is_empty(), "{path}: {others:?}");
    }
}

#[test]
fn protected_routes_document_401_and_public_ones_do_not_need_to() {
    let doc = doc();
    for (path, method, op) in operations(&doc) {
        let security = op["security"].as_array().unwrap();
        let public = security.is_empty()
            || security
                .iter()
                .any(|r| r.as_object().is_some_and(|o| o.is_empty()) && security.len() == 1);
        if !public {
            assert!(
                op["responses"].get("401").is_some(),
                "{method} {path} is protected but documents no 401"
            );
        }
    }
}
