//! `openapi.yaml` against the server: every documented operation is answered with a
//! documented status, and every route the server has is documented.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};

use common::mock::MockVm;
use common::{parse_head, split_head, TestServer};
use keel_api::ROUTES;
use serde_json::Value;

const METHODS: &[&str] = &["get", "put", "post", "patch", "delete", "head", "options", "trace"];

fn document() -> Value {
    let text = include_str!("../openapi.yaml");
    serde_yaml_ng::from_str(text).expect("openapi.yaml parses")
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local $ref");
            resolve(doc, doc.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {r}")))
        }
        None => v,
    }
}

/// (method in upper case, path, operation object) for every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            assert!(METHODS.contains(&method.as_str()), "{path}: {method} is not a method");
            ops.push((method.to_uppercase(), path.clone(), op));
        }
    }
    ops
}

#[test]
fn every_server_route_is_documented_and_every_documented_route_is_served() {
    let doc = document();
    let documented: BTreeSet<(String, String)> =
        operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
    let served: BTreeSet<(String, String)> =
        ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(undocumented.is_empty(), "routes missing from openapi.yaml: {undocumented:?}");
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(unserved.is_empty(), "documented but not routed: {unserved:?}");
}

#[test]
fn request_bodies_refuse_unknown_properties() {
    let doc = document();
    for (method, path, op) in operations(&doc) {
        let Some(body) = op.get("requestBody") else { continue };
        let schema = resolve(&doc, &body["content"]["application/json"]["schema"]);
        // A oneOf must close every branch.
        let branches = match schema.get("oneOf").and_then(Value::as_array) {
            Some(branches) => branches.iter().map(|b| resolve(&doc, b)).collect(),
            None => vec![schema],
        };
        for branch in branches {
            assert_eq!(
                branch.get("additionalProperties"),
                Some(&Value::Bool(false)),
                "{method} {path}: request schemas must set additionalProperties: false"
            );
        }
        assert!(
            body["content"]["application/json"].get("example").is_some(),
            "{method} {path}: the request needs an example (this test sends it)"
        );
    }
}

/// The request for an operation, built from the document: its example body, its required
/// headers (first enum value), and one query parameter value (or none).
fn build_request(doc: &Value, method: &str, path: &str, op: &Value, query: &str) -> Vec<u8> {
    let mut headers = Vec::new();
    for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        let p = resolve(doc, p);
        if p["in"] == "header" && p["required"] == true {
            let value = p["schema"]["enum"][0].as_str().expect("header enum");
            headers.push(format!("{}: {value}\r\n", p["name"].as_str().unwrap()));
        }
    }
    if !headers.iter().any(|h| h.starts_with("Connection:")) {
        headers.push("Connection: close\r\n".into());
    }
    let body = op
        .get("requestBody")
        .map(|b| serde_json::to_string(&b["content"]["application/json"]["example"]).unwrap());
    let mut req = format!("{method} {path}{query} HTTP/1.1\r\nHost: localhost\r\n");
    req.extend(headers);
    match body {
        Some(body) => req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len())),
        None => req.push_str("\r\n"),
    }
    req.into_bytes()
}

/// Query strings to try: none, and each enum value of each query parameter.
fn query_variants(doc: &Value, op: &Value) -> Vec<String> {
    let mut variants = vec![String::new()];
    for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        let p = resolve(doc, p);
        if p["in"] == "query" {
            for v in p["schema"]["enum"].as_array().expect("query enum") {
                variants.push(format!("?{}={}", p["name"].as_str().unwrap(), v.as_str().unwrap()));
            }
        }
    }
    variants
}

#[test]
fn every_documented_operation_answers_its_example_with_a_documented_success() {
    let doc = document();
    for (method, path, op) in operations(&doc) {
        for query in query_variants(&doc, op) {
            let request = build_request(&doc, &method, &path, op, &query);
            let what = format!("{method} {path}{query}");
            // Each operation gets a fresh VM in the state its example needs: InstanceStart
            // needs one not yet started, everything else a running one.
            let starting = String::from_utf8_lossy(&request).contains("InstanceStart")
                || path == "/snapshot/load";
            let s = TestServer::start(if starting { MockVm::new() } else { MockVm::running() });
            let mut c = s.connect();
            c.write_all(&request).unwrap();
            let mut reply = Vec::new();
            let mut buf = [0u8; 4096];
            let (head, rest) = loop {
                if let Some((head, rest)) = split_head(&reply) {
                    break (head.to_vec(), rest.to_vec());
                }
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0, "{what}: closed before a response");
                reply.extend_from_slice(&buf[..n]);
            };
            let (status, headers) = parse_head(&head).expect("status line");
            let responses = op["responses"].as_object().expect("responses");
            assert!(responses.contains_key(&status.to_string()), "{what}: undocumented {status}");
            assert!((100..300).contains(&status), "{what}: example answered {status}");
            check_body(&doc, &what, &responses[&status.to_string()], &headers, rest, &mut c);
        }
    }
}

/// A JSON success body must have the required fields of its documented schema.
fn check_body(
    doc: &Value,
    what: &str,
    response: &Value,
    headers: &std::collections::HashMap<String, String>,
    mut body: Vec<u8>,
    c: &mut std::os::unix::net::UnixStream,
) {
    let Some(content_type) = headers.get("content-type") else { return };
    let media = &resolve(doc, response)["content"][content_type.as_str()];
    assert!(media.is_object(), "{what}: undocumented content type {content_type}");
    let len: usize = headers["content-length"].parse().unwrap();
    while body.len() < len {
        let mut buf = [0u8; 4096];
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "{what}: body cut short");
        body.extend_from_slice(&buf[..n]);
    }
    let schema = resolve(doc, &media["schema"]);
    if schema["type"] != "object" {
        return;
    }
    let value: Value = serde_json::from_slice(&body).expect("JSON body");
    for field in schema["required"].as_array().into_iter().flatten() {
        let field = field.as_str().unwrap();
        assert!(value.get(field).is_some(), "{what}: body lacks required {field}: {value}");
    }
}
