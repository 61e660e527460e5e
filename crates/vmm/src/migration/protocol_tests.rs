//! The wire format and the handshake over real loopback connections: what a peer sends that
//! is wrong is refused with a typed error, never a panic.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use super::*;
use crate::migration::auth::{as_receiver, as_sender, Token};
use crate::migration::MigrationError;

fn token(s: &str) -> Token {
    Token::new(s.as_bytes().to_vec()).unwrap()
}

/// Runs `server` on the accepted side of a loopback connection and `client` on the other.
fn pair<A: Send + 'static, B>(
    server: impl FnOnce(TcpStream) -> A + Send + 'static,
    client: impl FnOnce(TcpStream) -> B,
) -> (A, B) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = thread::spawn(move || server(listener.accept().unwrap().0));
    let b = client(TcpStream::connect(addr).unwrap());
    (t.join().unwrap(), b)
}

#[test]
fn peers_with_one_token_authenticate_and_exchange_tagged_frames() {
    let (got, ()) = pair(
        |s| {
            let mut ch = Channel::open(s).unwrap();
            as_receiver(&mut ch, &token("0123456789abcdef-shared")).unwrap();
            let f = ch.expect(Kind::Config).unwrap();
            let c: Config = f.decode().unwrap();
            let p = ch.expect(Kind::Pages).unwrap();
            let pages: Vec<_> =
                pages(&p.payload).map(|e| e.unwrap()).map(|(n, d)| (n, d.map(|d| d[0]))).collect();
            (c, pages)
        },
        |s| {
            let mut ch = Channel::open(s).unwrap();
            as_sender(&mut ch, &token("0123456789abcdef-shared\n")).unwrap();
            let config = Config { vm_file: "vcpus = 1\n".into(), ram_size: 1 << 20 };
            ch.send_value(Kind::Config, &config).unwrap();
            let mut payload = Vec::new();
            put_page(&mut payload, 3, Some(&[7u8; PAGE_SIZE]));
            put_page(&mut payload, 9, None);
            ch.send(Kind::Pages, &payload).unwrap();
            ch.flush().unwrap();
        },
    );
    assert_eq!(got.0.ram_size, 1 << 20);
    assert_eq!(got.1, vec![(3, Some(7)), (9, None)]);
}

#[test]
fn a_wrong_token_is_refused_on_both_sides() {
    let (server, client) = pair(
        |s| {
            let mut ch = Channel::open(s).unwrap();
            as_receiver(&mut ch, &token("the-receivers-token-123"))
        },
        |s| {
            let mut ch = Channel::open(s).unwrap();
            as_sender(&mut ch, &token("the-senders-other-token"))
        },
    );
    assert!(matches!(server, Err(MigrationError::AuthFailed)), "{server:?}");
    let err = client.unwrap_err();
    assert!(matches!(err, MigrationError::PeerRefusedToken(_)), "{err:?}");
    assert!(err.to_string().contains("token"), "{err}");
}

#[test]
fn a_receiver_that_cannot_prove_the_token_gets_nothing() {
    // A fake receiver answers the sender's proof with garbage.
    let (_, client) = pair(
        |mut s| {
            let mut pre = MAGIC.to_vec();
            pre.extend_from_slice(&VERSION.to_le_bytes());
            s.write_all(&pre).unwrap();
            let mut theirs = [0u8; 12];
            s.read_exact(&mut theirs).unwrap();
            s.write_all(&[Kind::Challenge as u8, 32, 0, 0, 0]).unwrap();
            s.write_all(&[1u8; 32]).unwrap();
            let mut auth = [0u8; 5 + 64];
            s.read_exact(&mut auth).unwrap();
            s.write_all(&[Kind::AuthOk as u8, 32, 0, 0, 0]).unwrap();
            s.write_all(&[2u8; 32]).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            rest
        },
        |s| {
            let mut ch = Channel::open(s).unwrap();
            as_sender(&mut ch, &token("0123456789abcdef-shared"))
        },
    );
    assert!(matches!(client, Err(MigrationError::ReceiverNotAuthentic)), "{client:?}");
}

#[test]
fn strangers_and_other_versions_are_refused() {
    let (server, _) = pair(
        |s| Channel::open(s).err(),
        |mut s| {
            s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        },
    );
    assert!(matches!(server, Some(MigrationError::NotKeel)), "{server:?}");
    let (server, client) = pair(
        |s| Channel::open(s).err(),
        |mut s| {
            let mut pre = MAGIC.to_vec();
            pre.extend_from_slice(&99u32.to_le_bytes());
            s.write_all(&pre).unwrap();
            let mut back = Vec::new();
            let _ = s.read_to_end(&mut back);
            String::from_utf8_lossy(&back).into_owned()
        },
    );
    assert!(matches!(server, Some(MigrationError::Version { theirs: 99, ours: VERSION })));
    assert!(client.contains("version 1, not 99"), "{client}");
}

#[test]
fn tampered_oversized_and_malformed_frames_are_errors() {
    let key = [5u8; 32];
    let (server, ()) = pair(
        move |s| {
            let mut ch = Channel::open(s).unwrap();
            ch.seal(&key, &key);
            let first = ch.recv().map(|f| f.kind);
            let second = ch.recv().map(|f| f.kind);
            (first, second)
        },
        move |mut s| {
            let mut pre = MAGIC.to_vec();
            pre.extend_from_slice(&VERSION.to_le_bytes());
            s.write_all(&pre).unwrap();
            let mut theirs = [0u8; 12];
            s.read_exact(&mut theirs).unwrap();
            // A frame with a good tag, then one whose payload was changed on the way.
            let mut seal = Seal { key: HmacSha256::new_from_slice(&key).unwrap(), seq: 0 };
            let tag = seal.tag(Kind::Ready as u8, b"");
            s.write_all(&[Kind::Ready as u8, 0, 0, 0, 0]).unwrap();
            s.write_all(&tag).unwrap();
            let tag = seal.tag(Kind::Pages as u8, b"abc");
            s.write_all(&[Kind::Pages as u8, 3, 0, 0, 0]).unwrap();
            s.write_all(b"abd").unwrap();
            s.write_all(&tag).unwrap();
        },
    );
    assert_eq!(server.0.unwrap(), Kind::Ready);
    assert!(matches!(server.1, Err(MigrationError::BadTag)), "{:?}", server.1);

    let (server, ()) = pair(
        |s| Channel::open(s).unwrap().recv().err(),
        |mut s| {
            let mut pre = MAGIC.to_vec();
            pre.extend_from_slice(&VERSION.to_le_bytes());
            s.write_all(&pre).unwrap();
            s.write_all(&[Kind::Pages as u8, 0xff, 0xff, 0xff, 0xff]).unwrap();
            let mut theirs = [0u8; 12];
            let _ = s.read_exact(&mut theirs);
        },
    );
    assert!(matches!(server, Some(MigrationError::Malformed(_))), "{server:?}");

    for bad in [&[1u8, 2, 3][..], &[0u8; 9][..], &[0, 0, 0, 0, 0, 0, 0, 0, 7][..]] {
        assert!(pages(bad).any(|e| e.is_err()), "{bad:?}");
    }
    assert!(pages(&[]).next().is_none());
}

#[test]
fn short_and_long_tokens_are_refused_and_never_printed() {
    assert!(Token::new(b"short".to_vec()).is_err());
    assert!(Token::new(vec![b'x'; 5000]).is_err());
    let t = token("0123456789abcdef-secret");
    assert!(!format!("{t:?}").contains("secret"));
}

#[test]
fn zero_pages_are_told_apart() {
    let mut page = vec![0u8; PAGE_SIZE];
    assert!(is_zero(&page));
    page[PAGE_SIZE - 1] = 1;
    assert!(!is_zero(&page));
}
