//! `node check-history FILE`: checks a key-value history a run recorded
//! (a [`wire::history::History`] as JSON, the runner's `history-*.json`) for
//! linearizability with [`runtime::check::linearizability::check_kv`].
//!
//! Prints one [`HistoryVerdict`] as JSON on standard output and a line for a
//! person on standard error; exits 0 if the history is linearizable, 1 if
//! it is not (or the search gave up), 2 if the file cannot be read. The
//! runner runs this on every history it saves (it does not link the
//! checker itself, so that it builds without the protocols).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use runtime::check::Operation;
use runtime::check::linearizability::check_kv;
use runtime::time::Time;
use wire::ClientId;
use wire::history::{History, HistoryVerdict};
use wire::kv::{Op, OpResult};

#[derive(Debug, Args)]
pub struct CheckHistoryArgs {
    /// The history, as JSON.
    file: PathBuf,
}

pub fn run(args: &CheckHistoryArgs) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let history: History = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a key-value history", args.file.display()))?;
    let verdict = check(&history);
    println!(
        "{}",
        serde_json::to_string(&verdict).context("writing the verdict")?
    );
    match &verdict.violation {
        None => {
            eprintln!(
                "{}: linearizable ({} operations, {} completed, on {} of {} sampled keys)",
                args.file.display(),
                verdict.ops,
                verdict.completed,
                verdict.keys_with_ops,
                verdict.keys
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(violation) => {
            eprintln!("{}: {violation}", args.file.display());
            Ok(ExitCode::from(1))
        }
    }
}

/// Checks `history`. A put the store refused as full changed nothing and
/// read nothing, so it is left out; everything else goes to the checker as
/// recorded.
pub fn check(history: &History) -> HistoryVerdict {
    let mut refused_full = 0;
    let mut keys_with_ops = std::collections::BTreeSet::new();
    let mut operations = Vec::with_capacity(history.ops.len());
    for op in &history.ops {
        let decoded = wire::decode::<Op>(&op.op).ok();
        if let Some(decoded) = &decoded {
            keys_with_ops.insert(decoded.key().to_vec());
        }
        let full = matches!(decoded, Some(Op::Put { .. }))
            && op.completed.as_ref().is_some_and(|(_, result)| {
                matches!(wire::decode::<OpResult>(result), Ok(OpResult::Full))
            });
        if full {
            refused_full += 1;
            continue;
        }
        operations.push(Operation {
            client: ClientId(op.client),
            op: op.op.clone(),
            invoked: Time::from_nanos(op.invoked_ns),
            completed: op
                .completed
                .as_ref()
                .map(|(at, result)| (Time::from_nanos(*at), result.clone())),
        });
    }
    let (violation, key) = match check_kv(&operations) {
        Ok(()) => (None, None),
        Err(violation) => (
            Some(violation.to_string()),
            violation
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned()),
        ),
    };
    HistoryVerdict {
        ops: history.ops.len(),
        completed: history.completed(),
        keys: history.keys.len(),
        keys_with_ops: keys_with_ops.len(),
        refused_full,
        violation,
        key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::history::HistoryOp;

    fn encode_op(op: &Op) -> Vec<u8> {
        wire::codec::encode_to_vec(op).unwrap()
    }

    fn encode(result: &OpResult) -> Vec<u8> {
        wire::codec::encode_to_vec(result).unwrap()
    }

    fn put(client: u64, value: &[u8], at: (u64, u64), previous: Option<&[u8]>) -> HistoryOp {
        HistoryOp {
            client,
            op: encode_op(&Op::Put {
                key: b"k0".to_vec(),
                value: value.to_vec(),
            }),
            invoked_ns: at.0,
            completed: Some((
                at.1,
                encode(&OpResult::Replaced(previous.map(<[u8]>::to_vec))),
            )),
        }
    }

    fn get(client: u64, at: (u64, u64), value: Option<&[u8]>) -> HistoryOp {
        HistoryOp {
            client,
            op: encode_op(&Op::Get {
                key: b"k0".to_vec(),
            }),
            invoked_ns: at.0,
            completed: Some((at.1, encode(&OpResult::Value(value.map(<[u8]>::to_vec))))),
        }
    }

    fn history(ops: Vec<HistoryOp>) -> History {
        History {
            keys: vec![0, 1],
            ops,
            cut_ns: None,
        }
    }

    #[test]
    fn a_good_history_passes_and_a_stale_read_fails() {
        let good = history(vec![
            put(1, b"a", (0, 10), None),
            put(2, b"b", (20, 30), Some(b"a")),
            get(3, (40, 50), Some(b"b")),
        ]);
        let verdict = check(&good);
        assert_eq!(verdict.violation, None);
        assert_eq!((verdict.ops, verdict.completed), (3, 3));
        assert_eq!((verdict.keys, verdict.keys_with_ops), (2, 1));
        // The read after both writes returns the overwritten value.
        let stale = history(vec![
            put(1, b"a", (0, 10), None),
            put(2, b"b", (20, 30), Some(b"a")),
            get(3, (40, 50), Some(b"a")),
        ]);
        let verdict = check(&stale);
        assert!(verdict.violation.is_some());
        assert_eq!(verdict.key.as_deref(), Some("k0"));
    }

    /// A put refused as full is left out; anything else of the wrong kind is
    /// a violation.
    #[test]
    fn refused_puts_are_left_out() {
        let mut full = put(1, b"a", (0, 10), None);
        full.completed = Some((10, encode(&OpResult::Full)));
        let verdict = check(&history(vec![full, get(2, (20, 30), None)]));
        assert_eq!(verdict.violation, None);
        assert_eq!(verdict.refused_full, 1);
        let mut invalid = get(2, (20, 30), None);
        invalid.completed = Some((30, encode(&OpResult::Invalid)));
        assert!(check(&history(vec![invalid])).violation.is_some());
    }
}
