//! Applications: what a replicated service executes.
//!
//! Protocols order opaque operations; an [`App`] gives them meaning. Execution
//! must be deterministic: replicas that execute the same operations in the same
//! order produce the same results.

use std::collections::HashMap;

use wire::kv::{Op, OpResult};

/// A deterministic state machine over opaque operations.
pub trait App: Send {
    /// Executes `op` and returns its result. Malformed operations are the
    /// client's problem: they get an error result, never a panic.
    fn execute(&mut self, op: &[u8]) -> Vec<u8>;
}

/// Does nothing and returns an empty result: measures the protocol alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullApp;

impl App for NullApp {
    fn execute(&mut self, _op: &[u8]) -> Vec<u8> {
        Vec::new()
    }
}

/// A key-value store over byte keys and values; operations and results are
/// [`wire::kv::Op`] and [`wire::kv::OpResult`] in the codec's encoding.
#[derive(Clone, Debug, Default)]
pub struct KvApp {
    store: HashMap<Vec<u8>, Vec<u8>>,
}

impl KvApp {
    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    pub fn apply(&mut self, op: Op) -> OpResult {
        match op {
            Op::Get { key } => OpResult::Value(self.store.get(&key).cloned()),
            Op::Put { key, value } => OpResult::Replaced(self.store.insert(key, value)),
            Op::Delete { key } => OpResult::Removed(self.store.remove(&key)),
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn null_app_returns_nothing() {
        assert!(NullApp.execute(b"anything").is_empty());
    }
}
