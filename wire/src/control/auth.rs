//! Who may drive a node: the control connection's handshake, and reads with
//! a deadline for a whole exchange.
//!
//! The runner makes a fresh [`ControlSecret`] for every node it starts and
//! hands it over the node's standard input (never the command line, which
//! `ps` shows to every user). A connection to the control port then proves
//! knowledge of the secret without sending it:
//!
//! 1. node → runner: [`HANDSHAKE_MAGIC`] and a fresh random challenge
//!    ([`SECRET_LEN`] bytes);
//! 2. runner → node: HMAC-SHA256 under the secret of the runner's label and
//!    the challenge;
//! 3. node → runner: the same with the node's label, so the runner knows it
//!    reached the node it started (and not whatever else listens there).
//!
//! A proof is checked in constant time. The whole handshake, and the first
//! command after it, must arrive within a deadline ([`DeadlineReader`]): a
//! peer that trickles a byte a second is cut off at the deadline, not kept
//! alive by each byte. The labels differ per side, so a node's proof cannot
//! be replayed as a runner's, and each challenge is fresh, so a recorded
//! exchange proves nothing on the next connection.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use crate::crypto::{Mac, MacKey};

/// Bytes in a secret, a challenge and a proof.
pub const SECRET_LEN: usize = 32;

/// What a node sends first on every control connection, before its
/// challenge: the protocol and its handshake version.
pub const HANDSHAKE_MAGIC: &[u8; 8] = b"NODECTL1";

/// Which end of a control connection a proof comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Runner,
    Node,
}

impl Side {
    fn label(self) -> &'static [u8] {
        match self {
            Side::Runner => b"node control handshake v1: runner proof",
            Side::Node => b"node control handshake v1: node proof",
        }
    }
}

/// The secret one node shares with the runner that started it. Its `Debug`
/// does not print it.
#[derive(Clone)]
pub struct ControlSecret {
    bytes: [u8; SECRET_LEN],
    key: MacKey,
}

impl fmt::Debug for ControlSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ControlSecret(…)")
    }
}

impl ControlSecret {
    /// A fresh secret from the kernel's random source.
    pub fn random() -> io::Result<ControlSecret> {
        Ok(ControlSecret::from_bytes(random_bytes()?))
    }

    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> ControlSecret {
        ControlSecret {
            bytes,
            key: MacKey::new(&bytes),
        }
    }

    /// The secret as the line a node reads from its standard input: 64
    /// lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads [`Self::to_hex`]'s form (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<ControlSecret, String> {
        let text = text.trim();
        if text.len() != 2 * SECRET_LEN || !text.is_ascii() {
            return Err(format!(
                "a control secret is {} hex digits, not {} characters",
                2 * SECRET_LEN,
                text.chars().count()
            ));
        }
        let mut bytes = [0; SECRET_LEN];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| "a control secret is hex digits only".to_string())?;
        }
        Ok(ControlSecret::from_bytes(bytes))
    }

    /// `side`'s proof that it knows the secret, for `challenge`.
    pub fn proof(&self, side: Side, challenge: &[u8; SECRET_LEN]) -> [u8; SECRET_LEN] {
        self.key.mac(&proof_input(side, challenge)).0
    }

    /// Whether `proof` is `side`'s proof for `challenge`, in constant time.
    pub fn verify(&self, side: Side, challenge: &[u8; SECRET_LEN], proof: &[u8]) -> bool {
        let Ok(proof) = <[u8; SECRET_LEN]>::try_from(proof) else {
            return false;
        };
        self.key
            .verify(&proof_input(side, challenge), &Mac(proof))
            .is_ok()
    }
}

fn proof_input(side: Side, challenge: &[u8; SECRET_LEN]) -> Vec<u8> {
    let mut input = side.label().to_vec();
    input.extend_from_slice(challenge);
    input
}

/// [`SECRET_LEN`] bytes from the kernel's random source (`/dev/urandom`,
/// the source the `getrandom` system call also draws from).
pub fn random_bytes() -> io::Result<[u8; SECRET_LEN]> {
    let mut bytes = [0; SECRET_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the peer does not speak the control handshake (no {HANDSHAKE_MAGIC:?})")]
    NotAControlPort,
    #[error("the peer's proof is wrong: it does not hold this node's control secret")]
    BadProof,
    #[error("the handshake did not finish by its deadline")]
    TimedOut,
    #[error("the connection closed during the handshake")]
    Closed,
    #[error("control handshake: {0}")]
    Io(io::Error),
}

impl From<io::Error> for HandshakeError {
    fn from(error: io::Error) -> HandshakeError {
        match error.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => HandshakeError::TimedOut,
            io::ErrorKind::UnexpectedEof => HandshakeError::Closed,
            _ => HandshakeError::Io(error),
        }
    }
}

/// The node's side: challenge the peer, check its proof, prove itself. Every
/// read is bounded by `deadline` (writes by the stream's write timeout).
pub fn node_handshake(
    stream: &mut TcpStream,
    secret: &ControlSecret,
    deadline: Instant,
) -> Result<(), HandshakeError> {
    let challenge = random_bytes()?;
    let mut hello = HANDSHAKE_MAGIC.to_vec();
    hello.extend_from_slice(&challenge);
    stream.write_all(&hello)?;
    let mut proof = [0; SECRET_LEN];
    DeadlineReader::new(stream, deadline).read_exact(&mut proof)?;
    if !secret.verify(Side::Runner, &challenge, &proof) {
        return Err(HandshakeError::BadProof);
    }
    stream.write_all(&secret.proof(Side::Node, &challenge))?;
    Ok(())
}

/// The runner's side: answer the node's challenge, check the node's proof.
pub fn runner_handshake(
    stream: &mut TcpStream,
    secret: &ControlSecret,
    deadline: Instant,
) -> Result<(), HandshakeError> {
    let mut hello = [0; HANDSHAKE_MAGIC.len() + SECRET_LEN];
    DeadlineReader::new(stream, deadline).read_exact(&mut hello)?;
    let (magic, challenge) = hello.split_at(HANDSHAKE_MAGIC.len());
    if magic != HANDSHAKE_MAGIC {
        return Err(HandshakeError::NotAControlPort);
    }
    let challenge: [u8; SECRET_LEN] = challenge.try_into().expect("split at the magic");
    stream.write_all(&secret.proof(Side::Runner, &challenge))?;
    let mut proof = [0; SECRET_LEN];
    DeadlineReader::new(stream, deadline).read_exact(&mut proof)?;
    if !secret.verify(Side::Node, &challenge, &proof) {
        return Err(HandshakeError::BadProof);
    }
    Ok(())
}

/// Reads from a stream with one deadline for everything read through it:
/// each read waits only for what is left of the time, and once it has run
/// out every read fails with [`io::ErrorKind::TimedOut`]. (A read timeout
/// alone restarts with every byte, so a peer that trickles bytes would never
/// time out.) The stream's read timeout is left set; clear it after.
#[derive(Debug)]
pub struct DeadlineReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> DeadlineReader<'a> {
    pub fn new(stream: &'a TcpStream, deadline: Instant) -> DeadlineReader<'a> {
        DeadlineReader { stream, deadline }
    }
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        (&mut &*self.stream).read(buf)
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;
    use std::time::Duration;

    use super::*;

    #[test]
    fn secrets_read_back_and_do_not_print() {
        let secret = ControlSecret::random().unwrap();
        let back = ControlSecret::from_hex(&format!("{}\n", secret.to_hex())).unwrap();
        assert_eq!(back.bytes, secret.bytes);
        assert_ne!(ControlSecret::random().unwrap().bytes, secret.bytes);
        assert_eq!(format!("{secret:?}"), "ControlSecret(…)");
        assert!(ControlSecret::from_hex("abc").is_err());
        assert!(ControlSecret::from_hex(&"zz".repeat(32)).is_err());
        assert!(ControlSecret::from_hex(&"é".repeat(32)).is_err());
    }

    #[test]
    fn proofs_are_per_side_per_challenge_and_per_secret() {
        let secret = ControlSecret::from_bytes([7; SECRET_LEN]);
        let challenge = [1; SECRET_LEN];
        let proof = secret.proof(Side::Runner, &challenge);
        assert!(secret.verify(Side::Runner, &challenge, &proof));
        assert!(!secret.verify(Side::Node, &challenge, &proof), "side");
        assert!(
            !secret.verify(Side::Runner, &[2; SECRET_LEN], &proof),
            "challenge"
        );
        let other = ControlSecret::from_bytes([8; SECRET_LEN]);
        assert!(!other.verify(Side::Runner, &challenge, &proof), "secret");
        assert!(
            !secret.verify(Side::Runner, &challenge, &proof[..31]),
            "length"
        );
    }

    /// Both sides on loopback: the right secret passes, a wrong one fails
    /// on both ends.
    fn handshake(node_secret: ControlSecret, runner_secret: ControlSecret) -> (bool, bool) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let node = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            node_handshake(&mut stream, &node_secret, deadline).is_ok()
        });
        let mut stream = TcpStream::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let runner = runner_handshake(&mut stream, &runner_secret, deadline).is_ok();
        drop(stream);
        (node.join().unwrap(), runner)
    }

    #[test]
    fn the_handshake_passes_only_with_the_secret() {
        let secret = ControlSecret::random().unwrap();
        assert_eq!(handshake(secret.clone(), secret), (true, true));
        let (node, runner) = handshake(
            ControlSecret::random().unwrap(),
            ControlSecret::random().unwrap(),
        );
        assert!(!node && !runner);
    }

    #[test]
    fn a_trickling_peer_is_cut_off_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let trickler = thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            // One byte every 50 ms: each read succeeds, the whole never does.
            for _ in 0..40 {
                if stream.write_all(&[0]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        let (stream, _) = listener.accept().unwrap();
        let start = Instant::now();
        let deadline = start + Duration::from_millis(300);
        let mut buf = [0; SECRET_LEN];
        let error = DeadlineReader::new(&stream, deadline)
            .read_exact(&mut buf)
            .unwrap_err();
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{error}"
        );
        assert!(start.elapsed() < Duration::from_millis(1500));
        drop(stream);
        trickler.join().unwrap();
    }
}
