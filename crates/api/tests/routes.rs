//! Every route over a real Unix socket: success bodies and status codes, wrong-state 400s,
//! 404 and 405.

mod common;

use std::time::Duration;

use common::mock::MockVm;
use common::TestServer;
use serde_json::json;

fn action(s: &TestServer, body: &str) -> common::Response {
    s.request("PUT", "/actions", Some(body))
}

#[test]
fn get_root_describes_the_instance_through_its_states() {
    let s = TestServer::start(MockVm::new());
    let r = s.request("GET", "/", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["id"], "mock");
    assert_eq!(v["state"], "Not started");
    assert_eq!(v["vmm_version"], "0.1.0");
    assert_eq!(v["app_name"], "keel");
    assert_eq!(v["pid"], std::process::id());
    assert_eq!(v["vcpus"], 1);
    assert_eq!(v["memory_mib"], 256);
    assert!(v["uptime_s"].is_null());

    assert_eq!(action(&s, r#"{"action_type":"InstanceStart"}"#).status, 204);
    let v = s.request("GET", "/", None).json();
    assert_eq!(v["state"], "Running");
    assert!(v["uptime_s"].as_f64().unwrap() >= 0.0);

    assert_eq!(s.request("PATCH", "/vm", Some(r#"{"state":"Paused"}"#)).status, 204);
    assert_eq!(s.request("GET", "/", None).json()["state"], "Paused");
    assert_eq!(s.request("PATCH", "/vm", Some(r#"{"state":"Resumed"}"#)).status, 204);
    assert_eq!(s.request("GET", "/", None).json()["state"], "Running");
}

#[test]
fn start_twice_is_a_400_naming_the_state() {
    let s = TestServer::start(MockVm::new());
    assert_eq!(action(&s, r#"{"action_type":"InstanceStart"}"#).status, 204);
    let r = action(&s, r#"{"action_type":"InstanceStart"}"#);
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("already started"), "{}", r.fault());
}

#[test]
fn actions_before_start_are_400() {
    let s = TestServer::start(MockVm::new());
    for a in ["SendCtrlAltDel", "Stop", "Reset"] {
        let r = action(&s, &format!(r#"{{"action_type":"{a}"}}"#));
        assert_eq!(r.status, 400, "{a}");
        assert!(r.fault().contains("not started"), "{a}: {}", r.fault());
    }
}

#[test]
fn pause_and_resume_in_the_wrong_state_are_400() {
    let s = TestServer::start(MockVm::new());
    let r = s.request("PATCH", "/vm", Some(r#"{"state":"Paused"}"#));
    assert_eq!(r.status, 400);
    assert_eq!(r.fault(), "cannot pause: the VM is not running");
    let r = s.request("PATCH", "/vm", Some(r#"{"state":"Resumed"}"#));
    assert_eq!(r.status, 400);
    assert_eq!(r.fault(), "cannot resume: the VM is not paused");

    assert_eq!(action(&s, r#"{"action_type":"InstanceStart"}"#).status, 204);
    assert_eq!(s.request("PATCH", "/vm", Some(r#"{"state":"Resumed"}"#)).status, 400);
    assert_eq!(s.request("PATCH", "/vm", Some(r#"{"state":"Paused"}"#)).status, 204);
    assert_eq!(s.request("PATCH", "/vm", Some(r#"{"state":"Paused"}"#)).status, 400);
}

#[test]
fn every_action_reaches_the_vmm() {
    let s = TestServer::start(MockVm::running());
    assert_eq!(action(&s, r#"{"action_type":"SendCtrlAltDel"}"#).status, 204);
    assert_eq!(action(&s, r#"{"action_type":"FlushMetrics"}"#).status, 204);
    assert_eq!(s.mock.flushes(), 1);
    assert_eq!(action(&s, r#"{"action_type":"Reset"}"#).status, 204);
    assert_eq!(s.mock.resets(), 1);
    assert_eq!(action(&s, r#"{"action_type":"Stop"}"#).status, 204);
    assert_eq!(s.mock.last_stop_timeout(), Some(Duration::from_millis(10_000)));
    assert_eq!(s.request("GET", "/", None).json()["state"], "Not started");
}

#[test]
fn stop_passes_its_timeout_and_only_stop_takes_one() {
    let s = TestServer::start(MockVm::running());
    let r = action(&s, r#"{"action_type":"Reset","timeout_ms":5}"#);
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("timeout_ms applies only to Stop"), "{}", r.fault());
    assert_eq!(s.mock.resets(), 0);
    assert_eq!(action(&s, r#"{"action_type":"Stop","timeout_ms":250}"#).status, 204);
    assert_eq!(s.mock.last_stop_timeout(), Some(Duration::from_millis(250)));
}

#[test]
fn vm_config_is_the_vmms_json() {
    let s = TestServer::start(MockVm::new());
    let r = s.request("GET", "/vm/config", None);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["vcpus"], 1);
    assert_eq!(v["disks"][0]["format"], "raw");
    assert_eq!(v["balloon"]["deflate_on_oom"], true);
}

#[test]
fn balloon_get_put_patch() {
    let s = TestServer::start(MockVm::running());
    let r = s.request("GET", "/balloon", None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"amount_mib": 0, "deflate_on_oom": true, "stats_polling_interval_s": 1})
    );
    let put = r#"{"amount_mib":64,"deflate_on_oom":true,"stats_polling_interval_s":1}"#;
    assert_eq!(s.request("PUT", "/balloon", Some(put)).status, 204);
    assert_eq!(s.mock.balloon_target(), Some(64));
    assert_eq!(s.request("PATCH", "/balloon", Some(r#"{"amount_mib":32}"#)).status, 204);
    assert_eq!(s.request("GET", "/balloon", None).json()["amount_mib"], 32);

    // The other fields must match the VM file.
    let put = r#"{"amount_mib":8,"deflate_on_oom":false,"stats_polling_interval_s":1}"#;
    let r = s.request("PUT", "/balloon", Some(put));
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("deflate_on_oom"), "{}", r.fault());
    assert_eq!(s.mock.balloon_target(), Some(32));
    // PUT needs every field.
    let r = s.request("PUT", "/balloon", Some(r#"{"amount_mib":8}"#));
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("missing field"), "{}", r.fault());
}

#[test]
fn balloon_statistics_leave_out_what_the_guest_has_not_reported() {
    let s = TestServer::start(MockVm::running());
    assert_eq!(s.request("PATCH", "/balloon", Some(r#"{"amount_mib":4}"#)).status, 204);
    let r = s.request("GET", "/balloon/statistics", None);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["target_mib"], 4);
    assert_eq!(v["target_pages"], 1024);
    assert_eq!(v["free_memory"], 100 << 20);
    assert!(v.get("swap_in").is_none(), "{v}");
}

#[test]
fn balloon_routes_without_a_balloon_are_400() {
    let s = TestServer::start(MockVm::running().without_balloon());
    let put = r#"{"amount_mib":1,"deflate_on_oom":true,"stats_polling_interval_s":1}"#;
    for (method, path, body) in [
        ("GET", "/balloon", None),
        ("PUT", "/balloon", Some(put)),
        ("PATCH", "/balloon", Some(r#"{"amount_mib":1}"#)),
        ("GET", "/balloon/statistics", None),
    ] {
        let r = s.request(method, path, body);
        assert_eq!(r.status, 400, "{method} {path}");
        assert_eq!(r.fault(), "no balloon device");
    }
}

#[test]
fn metrics_as_json_and_as_prometheus() {
    let s = TestServer::start(MockVm::running());
    for path in ["/metrics", "/metrics?format=json"] {
        let r = s.request("GET", path, None);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = r.json();
        assert_eq!(v["vcpus"][0]["exits"]["sbi"], 1);
        assert_eq!(v["memory"]["rss_bytes"], 1 << 20);
    }
    let r = s.request("GET", "/metrics?format=prometheus", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    assert!(
        r.text().starts_with("keel_vcpu_instructions_total{vcpu=\"0\"} 1000\n"),
        "{}",
        r.text()
    );

    let r = s.request("GET", "/metrics?format=xml", None);
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("format=prometheus"), "{}", r.fault());
}

#[test]
fn unknown_query_parameters_are_400() {
    let s = TestServer::start(MockVm::new());
    let r = s.request("GET", "/?pretty=1", None);
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("\"pretty\""), "{}", r.fault());
}

#[test]
fn unknown_routes_are_404() {
    let s = TestServer::start(MockVm::new());
    for (method, path) in
        [("GET", "/nope"), ("GET", "/vm/"), ("PUT", "/action"), ("DELETE", "/balloon/x")]
    {
        let r = s.request(method, path, None);
        assert_eq!(r.status, 404, "{method} {path}");
        assert!(r.fault().contains(path), "{}", r.fault());
    }
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let s = TestServer::start(MockVm::new());
    for (method, path, allow) in [
        ("POST", "/", "GET"),
        ("GET", "/actions", "PUT"),
        ("PUT", "/vm", "PATCH"),
        ("DELETE", "/balloon", "GET, PUT, PATCH"),
        ("PUT", "/metrics", "GET"),
        ("POST", "/console", "GET"),
    ] {
        let r = s.request(method, path, Some("{}"));
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        assert!(r.fault().contains(method), "{}", r.fault());
    }
}

#[test]
fn error_statuses_outside_4xx_5xx_are_sent_as_500() {
    let e = keel_api::ApiError::new(200, "not an error status");
    assert_eq!(e.http_status(), 500);
    assert_eq!(keel_api::ApiError::new(409, "x").http_status(), 409);
}
