//! The server against bad and difficult clients: malformed bodies, oversized bodies, clients
//! that vanish or stall, many clients at once, a panicking VMM, a slow VMM call.

mod common;

use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::mock::{MockVm, StopGate};
use common::{closed_by_peer, read_response, send_raw, TestServer};
use keel_api::ServerConfig;

#[test]
fn malformed_json_is_400_naming_the_problem() {
    let s = TestServer::start(MockVm::new());
    for (body, expect) in [
        (r#"{"action_type":"#, "EOF while parsing"),
        (r#"{"action_type":"InstanceStart"} x"#, "trailing characters"),
        ("not json", "expected ident"),
        (r#"{"action_type":"Launch"}"#, "unknown variant `Launch`"),
        (r#"{"action_type":"Stop","timeout_ms":-1}"#, "invalid value: integer `-1`"),
        (r#"{"action_type":"Stop","timeout_ms":"5"}"#, "invalid type: string \"5\""),
        (r#"{"action_type":"Stop","timeout_ms":null}"#, "invalid type: null, expected u64"),
        (r#"{"action_type":"Stop","force":true}"#, "unknown field `force`"),
        (r#"{}"#, "missing field `action_type`"),
        (r#"["InstanceStart"]"#, "expected an object, found an array"),
        ("42", "invalid type: integer `42`, expected struct ActionRequest"),
        ("", "needs a JSON body"),
    ] {
        let r = s.request("PUT", "/actions", Some(body));
        assert_eq!(r.status, 400, "{body}");
        let fault = r.fault();
        assert!(fault.contains(expect), "{body}: {fault}");
    }
    // Nothing was started by any of them.
    assert_eq!(s.request("GET", "/", None).json()["state"], "Not started");
}

#[test]
fn unknown_fields_and_wrong_types_are_400_on_every_body() {
    let s = TestServer::start(MockVm::running());
    for (method, path, body, expect) in [
        ("PATCH", "/vm", r#"{"state":"Paused","force":1}"#, "unknown field `force`"),
        ("PATCH", "/vm", r#"{"state":"Stopped"}"#, "unknown variant `Stopped`"),
        ("PATCH", "/balloon", r#"{"amount_mib":1,"x":2}"#, "unknown field `x`"),
        ("PATCH", "/balloon", r#"{"amount_mib":4294967296}"#, "expected u32"),
        ("PATCH", "/balloon", r#"{"amount_mib":1.5}"#, "invalid type: floating point"),
        (
            "PUT",
            "/balloon",
            r#"{"amount_mib":1,"deflate_on_oom":"yes","stats_polling_interval_s":1}"#,
            "expected a boolean",
        ),
    ] {
        let r = s.request(method, path, Some(body));
        assert_eq!(r.status, 400, "{method} {path} {body}");
        let fault = r.fault();
        assert!(fault.contains(expect), "{body}: {fault}");
        assert!(fault.contains(&format!("{method} {path}")), "{fault}");
    }
    assert_eq!(s.request("GET", "/", None).json()["state"], "Running");
}

#[test]
fn oversized_bodies_are_413() {
    let s = TestServer::start(MockVm::new());
    let big = format!(r#"{{"action_type":"InstanceStart","pad":"{}"}}"#, "x".repeat(70 * 1024));
    let r = s.request("PUT", "/actions", Some(&big));
    assert_eq!(r.status, 413);
    assert!(r.fault().contains("65536-byte limit"), "{}", r.fault());

    // Without a Content-Length the limit still holds, counted as the chunks arrive.
    let mut req = b"PUT /actions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                    Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..20 {
        req.extend_from_slice(format!("1000\r\n{}\r\n", "y".repeat(0x1000)).as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(send_raw(&s.socket, &req).status, 413);
    assert_eq!(s.request("GET", "/", None).status, 200);
}

#[test]
fn a_hundred_concurrent_clients_are_all_answered() {
    let s = TestServer::start(MockVm::running());
    let socket = s.socket.clone();
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let socket = socket.clone();
            thread::spawn(move || match i % 4 {
                0 => common::request(&socket, "GET", "/", None).status,
                1 => common::request(&socket, "GET", "/metrics", None).status,
                2 => {
                    common::request(
                        &socket,
                        "PUT",
                        "/actions",
                        Some(r#"{"action_type":"FlushMetrics"}"#),
                    )
                    .status
                }
                _ => common::request(&socket, "GET", "/balloon", None).status,
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|&&st| st == 200).count(), 75, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&st| st == 204).count(), 25, "{statuses:?}");
    assert_eq!(s.mock.flushes(), 25);
}

#[test]
fn clients_that_vanish_mid_request_do_not_hurt_the_server() {
    let s = TestServer::start(MockVm::new());
    // Mid request line, mid headers, mid body.
    for partial in [
        &b"GET /vm/con"[..],
        b"PUT /actions HTTP/1.1\r\nHost: x\r\nContent-Le",
        b"PUT /actions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"action_type\":",
    ] {
        let mut c = s.connect();
        c.write_all(partial).unwrap();
        drop(c);
    }
    // A client that sends a whole request and leaves before the answer.
    let mut c = s.connect();
    c.write_all(&common::raw_request(
        "PUT",
        "/actions",
        Some(r#"{"action_type":"InstanceStart"}"#),
    ))
    .unwrap();
    drop(c);
    let r = s.request("GET", "/vm/config", None);
    assert_eq!(r.status, 200);
}

#[test]
fn a_slowloris_client_is_cut_off_and_blocks_no_one() {
    let config = ServerConfig {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let s = TestServer::with_config(MockVm::new(), config);
    let mut slow_head = s.connect();
    slow_head.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1").unwrap();
    let mut slow_body = s.connect();
    slow_body
        .write_all(b"PUT /actions HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"act")
        .unwrap();
    let mut silent = s.connect();

    // Others are served while they stall.
    assert_eq!(s.request("GET", "/", None).status, 200);

    // A stalled body gets a 408 and the connection closes; stalled or absent headers are cut.
    let r = read_response(&mut slow_body);
    assert_eq!(r.status, 408);
    assert!(r.fault().contains("did not arrive"), "{}", r.fault());
    assert!(closed_by_peer(&mut slow_body));
    assert!(closed_by_peer(&mut slow_head));
    assert!(closed_by_peer(&mut silent));
    assert_eq!(s.request("GET", "/", None).status, 200);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let s = TestServer::start(MockVm::new());
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c).status, 200);
    let body = r#"{"action_type":"InstanceStart"}"#;
    write!(c, "PUT /actions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .unwrap();
    assert_eq!(read_response(&mut c).status, 204);
    c.write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c).status, 404);
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c).json()["state"], "Running");
}

/// A refused request (405, 404, bad query) whose body arrives after its head: the server reads
/// that body before answering and keeps the connection. Answering at the head made hyper
/// close the connection under a client still sending, which then saw no response at all
/// (schemathesis through socat did).
#[test]
fn refused_requests_wait_for_their_body_and_keep_the_connection() {
    let s = TestServer::start(MockVm::new());
    let body = r#"{"amount_mib":64,"deflate_on_oom":true,"stats_polling_interval_s":1}"#;
    for (method, path, status) in
        [("OPTIONS", "/balloon", 405), ("PUT", "/nowhere", 404), ("PUT", "/actions?x=1", 400)]
    {
        let mut c = s.connect();
        write!(c, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len())
            .unwrap();
        // Nothing may come back while the body is still owed: a short read timeout that
        // expires is the assertion.
        c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut byte = [0u8; 1];
        let early = std::io::Read::read(&mut c, &mut byte);
        assert!(early.is_err(), "{method} {path}: answered before its body arrived");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(body.as_bytes()).unwrap();
        assert_eq!(read_response(&mut c).status, status, "{method} {path}");
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut c).status, 200, "{method} {path}: connection kept");
    }
}

#[test]
fn a_panicking_vmm_call_is_a_500_and_the_server_lives_on() {
    let s = TestServer::start(MockVm::running());
    s.mock.panic_on_metrics(true);
    let r = s.request("GET", "/metrics", None);
    assert_eq!(r.status, 500);
    assert!(r.fault().contains("mock metrics panic"), "{}", r.fault());
    s.mock.panic_on_metrics(false);
    assert_eq!(s.request("GET", "/metrics", None).status, 200);
    assert_eq!(s.request("GET", "/", None).status, 200);
}

#[test]
fn a_slow_stop_holds_up_no_other_request() {
    let s = TestServer::start(MockVm::running());
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    s.mock.gate_stop(StopGate { entered: entered_tx, release: release_rx });

    let mut stopping = s.connect();
    stopping
        .write_all(&common::raw_request("PUT", "/actions", Some(r#"{"action_type":"Stop"}"#)))
        .unwrap();
    entered_rx.recv().unwrap();
    // Stop is now blocked inside the VMM; the server still answers.
    assert_eq!(s.request("GET", "/", None).json()["state"], "Running");
    assert_eq!(s.request("GET", "/metrics", None).status, 200);
    release_tx.send(()).unwrap();
    assert_eq!(read_response(&mut stopping).status, 204);
    assert_eq!(s.request("GET", "/", None).json()["state"], "Not started");
}

#[test]
fn garbage_instead_of_http_gets_400_and_a_close() {
    let s = TestServer::start(MockVm::new());
    let mut c = s.connect();
    c.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n").unwrap();
    assert!(closed_by_peer(&mut c));
    assert_eq!(s.request("GET", "/", None).status, 200);
}
