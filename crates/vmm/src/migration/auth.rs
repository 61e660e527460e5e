//! Who may migrate to whom: a shared token, proven by challenge-response, never sent.
//!
//! Both hosts hold the same secret token (from a file, or `KEEL_MIGRATION_TOKEN`). After the
//! preambles:
//!
//! 1. receiver → sender: `Challenge` with a fresh random 32-byte nonce `Nr`;
//! 2. sender → receiver: `Auth` with its own fresh nonce `Ns` and
//!    `HMAC-SHA256(token, "keel-migration/1 sender" || Nr || Ns)`;
//! 3. the receiver checks it (in constant time). If it is wrong it answers `Error` and gives
//!    up; else `AuthOk` with `HMAC-SHA256(token, "keel-migration/1 receiver" || Nr || Ns)`,
//!    which the sender checks before it sends anything of the guest: each side proves it
//!    knows the token, and both nonces make every proof good for one connection only.
//! 4. Both derive one session key per direction, `HMAC-SHA256(token, "keel-migration/1
//!    sender frames" || Nr || Ns)` and `... "receiver frames" ...`, which tag every later
//!    frame (see `protocol.rs`).
//!
//! What goes over the wire is not encrypted: guest memory is readable by whoever can watch
//! the network between the hosts (as with QEMU's plain TCP migration). Use a private network
//! or a tunnel.

use std::io::Read;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::protocol::{constant_time_eq, Channel, Kind};
use super::MigrationError;

/// The environment variable a token may come from.
pub const TOKEN_ENV: &str = "KEEL_MIGRATION_TOKEN";
/// The shortest token accepted (bytes): the proofs can be attacked offline, so the token
/// must be hard to guess (`head -c 32 /dev/urandom | base64` makes a good one).
pub const MIN_TOKEN: usize = 16;
/// The longest token accepted (bytes).
pub const MAX_TOKEN: usize = 4096;

const SENDER_PROOF: &[u8] = b"keel-migration/1 sender";
const RECEIVER_PROOF: &[u8] = b"keel-migration/1 receiver";
const SENDER_FRAMES: &[u8] = b"keel-migration/1 sender frames";
const RECEIVER_FRAMES: &[u8] = b"keel-migration/1 receiver frames";

/// The shared secret. Its bytes never leave the process and are never printed.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token from its text; one trailing newline (as files have) is not part of it.
    pub fn new(mut bytes: Vec<u8>) -> Result<Token, MigrationError> {
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        if bytes.len() < MIN_TOKEN {
            return Err(MigrationError::Token(format!(
                "the token has {} bytes; it needs at least {MIN_TOKEN} (e.g. `head -c 32 \
                 /dev/urandom | base64`)",
                bytes.len()
            )));
        }
        if bytes.len() > MAX_TOKEN {
            return Err(MigrationError::Token(format!(
                "the token has {} bytes; at most {MAX_TOKEN} are allowed",
                bytes.len()
            )));
        }
        Ok(Token(bytes))
    }

    /// The token in `path`.
    pub fn from_file(path: &Path) -> Result<Token, MigrationError> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_TOKEN as u64 + 2).read_to_end(&mut bytes))
            .map_err(|e| MigrationError::Token(format!("cannot read {}: {e}", path.display())))?;
        Token::new(bytes).map_err(|e| match e {
            MigrationError::Token(why) => {
                MigrationError::Token(format!("{}: {why}", path.display()))
            }
            other => other,
        })
    }

    /// The token in `$KEEL_MIGRATION_TOKEN`, if it is set.
    pub fn from_env() -> Result<Option<Token>, MigrationError> {
        match std::env::var_os(TOKEN_ENV) {
            None => Ok(None),
            Some(v) => {
                use std::os::unix::ffi::OsStringExt;
                Token::new(v.into_vec()).map(Some).map_err(|e| match e {
                    MigrationError::Token(why) => {
                        MigrationError::Token(format!("{TOKEN_ENV}: {why}"))
                    }
                    other => other,
                })
            }
        }
    }

    /// The token's bytes, to hand to a process of our own (a VMM) through its environment
    /// or a private API socket.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    fn mac(&self, label: &[u8], nr: &[u8; 32], ns: &[u8; 32]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(label);
        mac.update(nr);
        mac.update(ns);
        mac.finalize().into_bytes().into()
    }
}

fn nonce() -> Result<[u8; 32], MigrationError> {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n)
        .map_err(|e| MigrationError::Token(format!("cannot draw a random nonce: {e}")))?;
    Ok(n)
}

/// The sender's side of the handshake: proves the token, checks the receiver's proof, and
/// seals the channel.
pub fn as_sender(ch: &mut Channel, token: &Token) -> Result<(), MigrationError> {
    let nr: [u8; 32] = ch.expect(Kind::Challenge)?.bytes()?;
    let ns = nonce()?;
    let mut auth = ns.to_vec();
    auth.extend_from_slice(&token.mac(SENDER_PROOF, &nr, &ns));
    ch.send(Kind::Auth, &auth)?;
    ch.flush()?;
    let answer = match ch.recv() {
        Ok(frame) if frame.kind == Kind::AuthOk => frame,
        Ok(frame) => {
            return Err(MigrationError::Unexpected { expected: Kind::AuthOk, got: frame.kind })
        }
        Err(MigrationError::Refused(why)) => return Err(MigrationError::PeerRefusedToken(why)),
        Err(e) => return Err(e),
    };
    let proof: [u8; 32] = answer.bytes()?;
    if !constant_time_eq(&proof, &token.mac(RECEIVER_PROOF, &nr, &ns)) {
        let _ = ch.send_error("authentication failed: your proof of the token is wrong");
        return Err(MigrationError::ReceiverNotAuthentic);
    }
    ch.seal(&token.mac(SENDER_FRAMES, &nr, &ns), &token.mac(RECEIVER_FRAMES, &nr, &ns));
    Ok(())
}

/// The receiver's side of the handshake: challenges the sender, checks its proof (a wrong
/// one is answered with an `Error` frame and refused), proves the token in turn, and seals
/// the channel.
pub fn as_receiver(ch: &mut Channel, token: &Token) -> Result<(), MigrationError> {
    let nr = nonce()?;
    ch.send(Kind::Challenge, &nr)?;
    ch.flush()?;
    let auth = ch.expect(Kind::Auth)?;
    let bytes: [u8; 64] = auth.bytes()?;
    let ns: [u8; 32] = bytes[..32].try_into().expect("32 bytes");
    if !constant_time_eq(&bytes[32..], &token.mac(SENDER_PROOF, &nr, &ns)) {
        let _ = ch.send_error(
            "authentication failed: the receiver's token is not the one the sender used",
        );
        return Err(MigrationError::AuthFailed);
    }
    ch.send(Kind::AuthOk, &token.mac(RECEIVER_PROOF, &nr, &ns))?;
    ch.flush()?;
    ch.seal(&token.mac(RECEIVER_FRAMES, &nr, &ns), &token.mac(SENDER_FRAMES, &nr, &ns));
    Ok(())
}
