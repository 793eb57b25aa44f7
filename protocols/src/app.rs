//! Applications: what a replicated service executes.
//!
//! Protocols order opaque operations; an [`App`] gives them meaning. Execution
//! must be deterministic: replicas that execute the same operations in the same
//! order produce the same results.
//!
//! Some protocols also need to know, before ordering, which operations only
//! read: a [`ReadOnly`] classifier tells them ([`read_only`] gives the one
//! of an [`AppConfig`]).

use std::collections::HashMap;

use wire::ClientId;
use wire::control::AppConfig;
use wire::kv::{Op, OpResult};

/// Whether an operation only reads the application's state: executing it
/// changes nothing, so the protocol may serve it on a read path instead of
/// ordering it as an update. Chain replication sends queries to the tail
/// and updates to the head; read-only optimisations (PBFT's, VR's) execute
/// reads without running the agreement protocol for them.
///
/// A classifier sees the client's bytes, before any replica checks them: it
/// must never panic, and must answer `false` for anything it does not
/// recognise (malformed bytes included), since treating an update as a read
/// would lose it while treating a read as an update only costs time. What
/// it answers `true` for, [`App::execute`] must not change the state for.
pub type ReadOnly = fn(&[u8]) -> bool;

/// [`KvApp`]'s classifier: a well-formed [`Op::Get`] only reads; puts,
/// deletes and bytes that do not decode as an [`Op`] are updates.
pub fn kv_read_only(op: &[u8]) -> bool {
    matches!(wire::decode::<Op>(op), Ok(Op::Get { .. }))
}

/// [`NullApp`]'s classifier: nothing is read-only, so protocols order every
/// null operation (the null app measures the protocol's ordering path).
pub fn never_read_only(_op: &[u8]) -> bool {
    false
}

/// The classifier of the application `app` names.
pub fn read_only(app: AppConfig) -> ReadOnly {
    match app {
        AppConfig::Null => never_read_only,
        AppConfig::Kv => kv_read_only,
    }
}

/// Where an operation was ordered: the protocol's commit position (PBFT's
/// sequence number; the baseline's count of executions) and whose request it
/// is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    pub slot: u64,
    pub client: ClientId,
    pub request_num: u64,
}

/// What a protocol ordered at a slot without handing an operation to the
/// application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unexecuted {
    /// A null batch: the slot holds nothing (a new primary fills gaps with
    /// them).
    Null,
    /// What the protocol ordered at the slot, named by the first bytes of
    /// its digest (a HotStuff block, empty or not): replicas that ordered
    /// different empty blocks at one slot disagree, though no operation
    /// tells them apart.
    Ordered([u8; 6]),
    /// A request the client table settled without executing: a duplicate, a
    /// registration, a request of an evicted client.
    Request {
        client: ClientId,
        request_num: u64,
        outcome: &'static str,
    },
}

/// A deterministic state machine over opaque operations.
///
/// Protocols call [`App::execute_at`] and [`App::unexecuted_at`], which tell
/// where in the order each operation stands; an application implements
/// [`App::execute`] and ignores positions. A wrapper that checks replicas
/// against each other (the simulator's execution log) overrides both.
pub trait App: Send {
    /// Executes `op` and returns its result. Malformed operations are the
    /// client's problem: they get an error result, never a panic.
    fn execute(&mut self, op: &[u8]) -> Vec<u8>;

    /// Executes `op`, ordered at `at`.
    fn execute_at(&mut self, at: Position, op: &[u8]) -> Vec<u8> {
        let _ = at;
        self.execute(op)
    }

    /// Slot `slot` held `what`, which does not reach [`App::execute`].
    fn unexecuted_at(&mut self, slot: u64, what: Unexecuted) {
        let _ = (slot, what);
    }

    /// The whole state, encoded deterministically: two apps that executed
    /// the same operations give the same bytes (replicas compare checkpoints
    /// by the digest of these bytes).
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the state by one [`App::snapshot`] produced. The bytes come
    /// from a correct replica (a protocol checks them against a digest that a
    /// quorum vouched for before restoring), so malformed bytes are a bug.
    fn restore(&mut self, snapshot: &[u8]);

    /// Answers an operation that only reads (one the protocol's
    /// [`ReadOnly`] classifier says so of) from the state as it stands,
    /// outside the order: it changes nothing, so it holds no slot, and a
    /// wrapper that logs executions (the simulator's) does not log it. The
    /// default executes it, which for a read-only operation changes
    /// nothing.
    fn query(&mut self, op: &[u8]) -> Vec<u8> {
        self.execute(op)
    }
}

/// Does nothing and returns an empty result (or zeros of the size the
/// operation asks for): measures the protocol alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullApp;

impl App for NullApp {
    /// An empty reply, or as many zeros as the operation asks for
    /// ([`wire::control::null_op`], at most
    /// [`wire::control::REPLY_SIZE_MAX`]).
    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        vec![0; wire::control::null_reply_size(op)]
    }

    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    fn restore(&mut self, snapshot: &[u8]) {
        assert!(snapshot.is_empty(), "NullApp snapshots are empty");
    }
}

/// Bytes a [`KvApp`]'s snapshot may take: a put that would grow it past
/// this answers [`OpResult::Full`]. Deterministic, so every replica refuses
/// the same puts, and a replicated store's checkpoints stay within what a
/// state transfer accepts.
pub const KV_BYTES_MAX: usize = 128 << 20;

/// A key-value store over byte keys and values; operations and results are
/// [`wire::kv::Op`] and [`wire::kv::OpResult`] in the codec's encoding.
#[derive(Clone, Debug, Default)]
pub struct KvApp {
    store: HashMap<Vec<u8>, Vec<u8>>,
    /// The snapshot's size: [`KvApp::entry_bytes`] summed over the entries.
    bytes: usize,
}

impl KvApp {
    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Bytes the snapshot takes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes an entry takes in the snapshot.
    fn entry_bytes(key: &[u8], value: &[u8]) -> usize {
        8 + key.len() + value.len()
    }

    pub fn apply(&mut self, op: Op) -> OpResult {
        match op {
            Op::Get { key } => OpResult::Value(self.store.get(&key).cloned()),
            Op::Put { key, value } => {
                let old = self
                    .store
                    .get(&key)
                    .map_or(0, |old| Self::entry_bytes(&key, old));
                let bytes = self.bytes - old + Self::entry_bytes(&key, &value);
                if bytes > KV_BYTES_MAX && bytes > self.bytes {
                    return OpResult::Full;
                }
                self.bytes = bytes;
                OpResult::Replaced(self.store.insert(key, value))
            }
            Op::Delete { key } => {
                let removed = self.store.remove(&key);
                if let Some(value) = &removed {
                    self.bytes -= Self::entry_bytes(&key, value);
                }
                OpResult::Removed(removed)
            }
        }
    }
}

impl App for KvApp {
    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        let result = match wire::decode::<Op>(op) {
            Ok(op) => self.apply(op),
            Err(_) => OpResult::Invalid,
        };
        // A value just under the size limit can make its result slightly too
        // large to encode; the client then gets `Invalid` instead.
        wire::codec::encode_to_vec(&result)
            .or_else(|_| wire::codec::encode_to_vec(&OpResult::Invalid))
            .expect("OpResult::Invalid always encodes")
    }

    /// Entries sorted by key, each as a little-endian `u32` key length, the
    /// key, a `u32` value length and the value. Not the codec: a store may
    /// be larger than a message.
    fn snapshot(&self) -> Vec<u8> {
        let mut entries: Vec<_> = self.store.iter().collect();
        entries.sort_unstable();
        let mut bytes = Vec::new();
        for (key, value) in entries {
            for part in [key, value] {
                let len = u32::try_from(part.len()).expect("keys and values fit a message");
                bytes.extend_from_slice(&len.to_le_bytes());
                bytes.extend_from_slice(part);
            }
        }
        bytes
    }

    fn restore(&mut self, snapshot: &[u8]) {
        fn part<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
            let (len, tail) = rest.split_at(4);
            let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
            let (part, tail) = tail.split_at(len);
            *rest = tail;
            part
        }
        self.store.clear();
        self.bytes = snapshot.len();
        let mut rest = snapshot;
        while !rest.is_empty() {
            let key = part(&mut rest).to_vec();
            let value = part(&mut rest).to_vec();
            self.store.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::control::{REPLY_SIZE_MAX, null_op};

    /// A null operation gets the reply it asks for, within the bound,
    /// whatever bytes a client sends.
    #[test]
    fn null_replies_are_as_long_as_asked_and_bounded() {
        let mut app = NullApp;
        assert!(app.execute(&null_op(16, 0)).is_empty());
        assert_eq!(app.execute(&null_op(16, 600)), vec![0; 600]);
        assert!(app.execute(&null_op(3, 600)).is_empty(), "too short to ask");
        assert!(app.execute(&[]).is_empty());
        assert_eq!(app.execute(&[0xff; 8]).len(), REPLY_SIZE_MAX);
    }

    fn encode(op: &Op) -> Vec<u8> {
        wire::codec::encode_to_vec(op).unwrap()
    }

    /// A well-formed get only reads; everything else, malformed bytes
    /// included, is an update, and no bytes make the classifier panic.
    #[test]
    fn kv_gets_alone_are_read_only() {
        assert!(kv_read_only(&encode(&Op::Get { key: key("a") })));
        assert!(kv_read_only(&encode(&Op::Get { key: Vec::new() })));
        assert!(!kv_read_only(&encode(&Op::Put {
            key: key("a"),
            value: key("1"),
        })));
        assert!(!kv_read_only(&encode(&Op::Delete { key: key("a") })));
        let get = encode(&Op::Get { key: key("abc") });
        let mut trailing = get.clone();
        trailing.push(0);
        assert!(!kv_read_only(&trailing), "trailing bytes");
        for len in 0..get.len() {
            assert!(!kv_read_only(&get[..len]), "truncated to {len}");
        }
        for bytes in [&[][..], &[9], &[0, 200, 1], &[255; 40], &[0; 8]] {
            assert!(!kv_read_only(bytes), "{bytes:?}");
        }
        let huge = vec![0; wire::MESSAGE_SIZE_MAX + 1];
        assert!(!kv_read_only(&huge));
    }

    #[test]
    fn null_operations_are_never_read_only() {
        for op in [null_op(16, 0), null_op(16, 600), Vec::new(), vec![0xff; 8]] {
            assert!(!never_read_only(&op));
        }
    }

    /// Each app configuration gets its app's classifier, and what a
    /// classifier calls read-only leaves that app's state as it was.
    #[test]
    fn read_only_follows_the_app_and_reads_change_nothing() {
        assert!(!read_only(AppConfig::Null)(&null_op(16, 0)));
        let classify = read_only(AppConfig::Kv);
        let get = encode(&Op::Get { key: key("a") });
        let put = encode(&Op::Put {
            key: key("a"),
            value: key("1"),
        });
        assert!(classify(&get));
        assert!(!classify(&put));
        let mut app = KvApp::default();
        for op in [&put, &get, &put, &get] {
            let before = app.snapshot();
            app.execute(op);
            if classify(op) {
                assert_eq!(app.snapshot(), before);
            }
        }
    }

    fn run(app: &mut KvApp, op: Op) -> OpResult {
        let bytes = wire::codec::encode_to_vec(&op).unwrap();
        wire::decode(&app.execute(&bytes)).unwrap()
    }

    fn key(k: &str) -> Vec<u8> {
        k.as_bytes().to_vec()
    }

    #[test]
    fn kv_get_put_delete() {
        let mut app = KvApp::default();
        assert_eq!(
            run(&mut app, Op::Get { key: key("a") }),
            OpResult::Value(None)
        );
        assert_eq!(
            run(
                &mut app,
                Op::Put {
                    key: key("a"),
                    value: key("1")
                }
            ),
            OpResult::Replaced(None)
        );
        assert_eq!(
            run(
                &mut app,
                Op::Put {
                    key: key("a"),
                    value: key("2")
                }
            ),
            OpResult::Replaced(Some(key("1")))
        );
        assert_eq!(
            run(&mut app, Op::Get { key: key("a") }),
            OpResult::Value(Some(key("2")))
        );
        assert_eq!(
            run(&mut app, Op::Delete { key: key("a") }),
            OpResult::Removed(Some(key("2")))
        );
        assert_eq!(
            run(&mut app, Op::Delete { key: key("a") }),
            OpResult::Removed(None)
        );
        assert!(app.is_empty());
    }

    #[test]
    fn kv_malformed_op_is_invalid_not_a_panic() {
        let mut app = KvApp::default();
        for bytes in [&[][..], &[9], &[0, 200, 1], &[255; 40]] {
            let result: OpResult = wire::decode(&app.execute(bytes)).unwrap();
            assert_eq!(result, OpResult::Invalid);
        }
    }

    #[test]
    fn kv_snapshot_is_deterministic_and_restores() {
        let mut a = KvApp::default();
        let mut b = KvApp::default();
        for (k, v) in [("x", "1"), ("y", "2"), ("z", "")] {
            run(
                &mut a,
                Op::Put {
                    key: key(k),
                    value: key(v),
                },
            );
        }
        for (k, v) in [("z", ""), ("x", "1"), ("y", "2")] {
            run(
                &mut b,
                Op::Put {
                    key: key(k),
                    value: key(v),
                },
            );
        }
        assert_eq!(a.snapshot(), b.snapshot());
        let mut c = KvApp::default();
        run(
            &mut c,
            Op::Put {
                key: key("w"),
                value: key("9"),
            },
        );
        c.restore(&a.snapshot());
        assert_eq!(c.snapshot(), a.snapshot());
        assert_eq!(
            run(&mut c, Op::Get { key: key("y") }),
            OpResult::Value(Some(key("2")))
        );
        c.restore(&KvApp::default().snapshot());
        assert!(c.is_empty());
    }

    #[test]
    fn a_store_at_its_budget_refuses_puts_that_grow_it() {
        let mut app = KvApp::default();
        let big = vec![7; 32 << 20];
        for k in ["a", "b", "c"] {
            let put = Op::Put {
                key: key(k),
                value: big.clone(),
            };
            assert_eq!(app.apply(put), OpResult::Replaced(None));
        }
        // A fourth would take the store past KV_BYTES_MAX.
        let put = |k: &str, len: usize| Op::Put {
            key: key(k),
            value: vec![1; len],
        };
        assert_eq!(app.apply(put("d", 32 << 20)), OpResult::Full);
        assert_eq!(app.apply(Op::Get { key: key("d") }), OpResult::Value(None));
        // Replacing a value by a smaller one, or deleting, is still fine,
        // and frees room.
        assert!(matches!(
            app.apply(put("a", 1)),
            OpResult::Replaced(Some(_))
        ));
        assert!(matches!(
            app.apply(put("d", 32 << 20)),
            OpResult::Replaced(None)
        ));
        assert_eq!(app.bytes(), app.snapshot().len());
        assert!(app.bytes() <= KV_BYTES_MAX);
        let mut restored = KvApp::default();
        restored.restore(&app.snapshot());
        assert_eq!(restored.bytes(), app.bytes());
    }
}
