//! `GET /console`: the upgrade and the byte bridge in both directions.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;

use common::mock::MockVm;
use common::{closed_by_peer, read_head, read_n, TestServer};

const UPGRADE: &[u8] =
    b"GET /console HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: keel-console\r\n\r\n";

fn attach(s: &TestServer) -> UnixStream {
    let mut c = s.connect();
    c.write_all(UPGRADE).unwrap();
    let (status, headers) = read_head(&mut c);
    assert_eq!(status, 101);
    assert_eq!(headers.get("upgrade").map(String::as_str), Some("keel-console"));
    assert_eq!(headers.get("connection").map(String::as_str), Some("upgrade"));
    c
}

#[test]
fn console_bytes_flow_both_ways() {
    let s = TestServer::start(MockVm::running());
    let mut c = attach(&s);
    // Keyboard in, echoed back out by the mock guest; all 256 byte values pass untouched.
    let all: Vec<u8> = (0..=255).collect();
    c.write_all(&all).unwrap();
    assert_eq!(read_n(&mut c, all.len()), all);
    // Guest output arriving on its own.
    s.mock.emit(b"login: ");
    assert_eq!(read_n(&mut c, 7), b"login: ");
}

#[test]
fn several_clients_see_the_same_output_and_detaching_leaves_the_vm_running() {
    let s = TestServer::start(MockVm::running());
    let mut a = attach(&s);
    let mut b = attach(&s);
    a.write_all(b"ls\r").unwrap();
    assert_eq!(read_n(&mut a, 3), b"ls\r");
    assert_eq!(read_n(&mut b, 3), b"ls\r");
    assert_eq!(s.mock.attached_consoles(), 2);

    drop(a);
    // b keeps working after a has gone (and a's dead sender is pruned on the way).
    s.mock.emit(b"$ ");
    assert_eq!(read_n(&mut b, 2), b"$ ");
    b.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut b, 1), b"x");
    assert_eq!(s.request("GET", "/", None).json()["state"], "Running");
}

#[test]
fn the_vmm_ending_the_output_closes_the_connection() {
    let s = TestServer::start(MockVm::running());
    let mut c = attach(&s);
    s.mock.detach_all();
    assert!(closed_by_peer(&mut c));
    assert_eq!(s.request("GET", "/", None).status, 200);
}

#[test]
fn stopping_the_server_closes_console_connections() {
    let mut s = TestServer::start(MockVm::running());
    let mut c = attach(&s);
    s.server.take().unwrap().shutdown();
    assert!(closed_by_peer(&mut c));
}

#[test]
fn console_without_upgrade_headers_is_400() {
    let s = TestServer::start(MockVm::running());
    let r = s.request("GET", "/console", None);
    assert_eq!(r.status, 400);
    assert!(r.fault().contains("Upgrade: keel-console"), "{}", r.fault());
    let r = common::send_raw(
        &s.socket,
        b"GET /console HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(s.mock.attached_consoles(), 0);
}
