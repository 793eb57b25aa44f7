//! Histories of key-value operations recorded in real runs, as the clients
//! node reports them and as the runner keeps them (`history-<point>.json`).
//!
//! With the key-value app, the benchmark clients record every operation on a
//! few sampled keys ([`sampled_keys`]) for the whole run: linearizability is
//! local to each key (Herlihy & Wing, theorem 1), so the operations on a key
//! are a history that can be checked alone, while the first N operations of
//! each client would not be (a recorded read may return an unrecorded write).
//! A put on a sampled key carries a value no other put carries
//! ([`tagged_value`]), so every value a read returns names the one write it
//! came from. Times are nanoseconds since the clients started, from the one
//! monotonic clock of the clients node (every benchmark client of a run lives
//! in that one process).
//!
//! Bounds: [`HISTORY_KEYS_MAX`] keys, [`HISTORY_OPS_MAX`] operations and
//! [`HISTORY_BYTES_MAX`] bytes of operations and results in all; with them a
//! history fits a control frame ([`crate::control::CONTROL_FRAME_MAX`]). When
//! a bound is reached the clients cut the history at a time common to all of
//! them ([`History::cut_ns`]); see the recorder in
//! `runtime::deploy` for why a cut keeps the history checkable.

use serde::{Deserialize, Serialize};

/// Keys whose operations are recorded, at most. Few, so that the bounds
/// below last a whole run at a few hundred thousand operations a second
/// (about 0.8% of the operations on 1,000 uniform keys).
pub const HISTORY_KEYS_MAX: u64 = 8;

/// At most one key in this many is sampled (at least one key is): with few
/// keys, sampling most of them would fill the history's bounds in a
/// fraction of the run.
pub const HISTORY_KEYS_PER_SAMPLED: u64 = 16;

/// Operations recorded in a run, at most (all client threads together).
pub const HISTORY_OPS_MAX: usize = 20_000;

/// Bytes of recorded operations and results in a run, at most.
pub const HISTORY_BYTES_MAX: usize = 4 << 20;

/// Bytes of a sampled put's value that make it unique: the writer's tag and
/// its count of writes, 8 bytes each. A value is never shorter.
pub const TAG_BYTES: usize = 16;

/// A clients node's record of the operations on its sampled keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The sampled keys, as the key indices `i` of `k<i>`.
    pub keys: Vec<u64>,
    /// Every recorded operation, in no particular order.
    pub ops: Vec<HistoryOp>,
    /// If a bound was reached: the cut, in ns since the clients started.
    /// Operations invoked at or after it are not recorded; operations
    /// invoked before it that completed at or after it are recorded as never
    /// completed (their results dropped).
    #[serde(default)]
    pub cut_ns: Option<u64>,
}

/// One recorded operation. In JSON, bytes are base64 text (a third more
/// than the bytes, where an array of numbers would be up to four times).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryOp {
    pub client: u64,
    /// The operation, a [`crate::kv::Op`] in the codec's encoding.
    #[serde(with = "base64_bytes")]
    pub op: Vec<u8>,
    pub invoked_ns: u64,
    /// When the result arrived, and the result (a [`crate::kv::OpResult`] in
    /// the codec's encoding); `None` if the operation was still outstanding
    /// when the clients stopped (or at the cut): it may or may not have
    /// taken effect.
    #[serde(with = "base64_completed")]
    pub completed: Option<(u64, Vec<u8>)>,
}

impl History {
    /// Operations that completed.
    pub fn completed(&self) -> usize {
        self.ops.iter().filter(|op| op.completed.is_some()).count()
    }
}

/// What `node check-history FILE` prints, as one line of JSON on standard
/// output (it exits 0 if the history is linearizable, 1 if not, 2 if the
/// file could not be read or checked at all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryVerdict {
    /// Operations in the history, and of them those that completed.
    pub ops: usize,
    pub completed: usize,
    /// Keys sampled, and of them keys with at least one operation.
    pub keys: usize,
    pub keys_with_ops: usize,
    /// Puts the store refused as full (nothing changed, nothing read):
    /// left out of the check.
    #[serde(default)]
    pub refused_full: usize,
    /// `None`: linearizable. Otherwise the checker's report.
    pub violation: Option<String>,
    /// The key the violation is about, if it names one (lossy UTF-8).
    pub key: Option<String>,
}

/// The keys sampled out of `k0 .. k<keys - 1>`: one in
/// [`HISTORY_KEYS_PER_SAMPLED`] (at least one), at most [`HISTORY_KEYS_MAX`],
/// spread evenly from `k0` (under a Zipf distribution, the hottest key is
/// among them). Sorted.
pub fn sampled_keys(keys: u64) -> Vec<u64> {
    let sampled = (keys / HISTORY_KEYS_PER_SAMPLED).clamp(keys.min(1), HISTORY_KEYS_MAX);
    (0..sampled)
        .map(|j| (u128::from(j) * u128::from(keys) / u128::from(sampled)) as u64)
        .collect()
}

/// The value of the `count`th put of the writer `tag` on a sampled key:
/// `tag` and `count` (little endian), then zeros up to `size` bytes (at
/// least [`TAG_BYTES`]). Writers with distinct tags never write the same
/// value.
pub fn tagged_value(tag: u64, count: u64, size: usize) -> Vec<u8> {
    let mut value = Vec::with_capacity(size.max(TAG_BYTES));
    value.extend_from_slice(&tag.to_le_bytes());
    value.extend_from_slice(&count.to_le_bytes());
    value.resize(size.max(TAG_BYTES), 0);
    value
}

/// `Vec<u8>` as standard base64 text.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// `Option<(u64, Vec<u8>)>` as `null` or `[ns, "base64"]`.
mod base64_completed {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Completed(u64, #[serde(with = "super::base64_bytes")] Vec<u8>);

    pub fn serialize<S: Serializer>(
        completed: &Option<(u64, Vec<u8>)>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        completed
            .as_ref()
            .map(|(at, result)| Completed(*at, result.clone()))
            .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<(u64, Vec<u8>)>, D::Error> {
        Ok(Option::<Completed>::deserialize(deserializer)?
            .map(|Completed(at, result)| (at, result)))
    }
}

/// A history at every bound at once, with the largest numbers: the most a
/// clients node reports (tests of the frame limit).
#[cfg(test)]
pub(crate) fn at_bounds() -> History {
    let per_op = HISTORY_BYTES_MAX / HISTORY_OPS_MAX;
    use crate::kv::{Op, OpResult};

    let op = crate::codec::encode_to_vec(&Op::Put {
        key: format!("k{}", u64::MAX).into_bytes(),
        value: vec![255; per_op / 2],
    })
    .unwrap();
    let result =
        crate::codec::encode_to_vec(&OpResult::Replaced(Some(vec![255; per_op / 2]))).unwrap();
    assert!(op.len() + result.len() >= per_op);
    History {
        keys: vec![u64::MAX; HISTORY_KEYS_MAX as usize],
        ops: (0..HISTORY_OPS_MAX)
            .map(|_| HistoryOp {
                client: u64::MAX,
                op: op.clone(),
                invoked_ns: u64::MAX,
                completed: Some((u64::MAX, result.clone())),
            })
            .collect(),
        cut_ns: Some(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::CONTROL_FRAME_MAX;

    #[test]
    fn sampled_keys_are_spread_and_bounded() {
        assert_eq!(sampled_keys(1), [0]);
        assert_eq!(sampled_keys(3), [0]);
        assert_eq!(sampled_keys(31), [0]);
        assert_eq!(sampled_keys(32), [0, 16]);
        assert_eq!(sampled_keys(48), [0, 16, 32]);
        assert_eq!(sampled_keys(128), [0, 16, 32, 48, 64, 80, 96, 112]);
        assert_eq!(sampled_keys(1000), [0, 125, 250, 375, 500, 625, 750, 875]);
        assert_eq!(sampled_keys(10_000).len() as u64, HISTORY_KEYS_MAX);
        let huge = sampled_keys(u64::MAX);
        assert_eq!(huge.len() as u64, HISTORY_KEYS_MAX);
        assert!(huge.windows(2).all(|w| w[0] < w[1]));
        assert!(sampled_keys(0).is_empty());
    }

    /// A final report from before histories, without the field, still reads.
    #[test]
    fn a_final_report_without_a_history_reads() {
        let json = r#"{"elapsed_ms":1,"ops":2,"measured_ops":2,"measured_ms":1,
            "latency_histogram":[],"counters":[],"cpu_ms":0}"#;
        let report: crate::control::FinalReport = serde_json::from_str(json).unwrap();
        assert_eq!(report.history, None);
    }

    #[test]
    fn tagged_values_are_unique_and_sized() {
        assert_eq!(tagged_value(1, 2, 0).len(), TAG_BYTES);
        assert_eq!(tagged_value(1, 2, 100).len(), 100);
        assert_ne!(tagged_value(1, 2, 16), tagged_value(2, 1, 16));
        assert_ne!(tagged_value(1, 2, 16), tagged_value(1, 3, 16));
        assert_eq!(&tagged_value(7, 9, 20)[..8], &7u64.to_le_bytes());
    }

    /// A history at every bound at once, with the largest numbers, still fits
    /// a control frame as JSON.
    #[test]
    fn a_history_at_its_bounds_fits_a_control_frame() {
        let history = at_bounds();
        let json = serde_json::to_vec(&history).unwrap();
        assert!(
            json.len() + 4096 < CONTROL_FRAME_MAX,
            "{} bytes of JSON",
            json.len()
        );
        let back: History = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, history);
    }
}
