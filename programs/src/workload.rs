//! The operations benchmark clients issue, made from a [`Workload`].
//!
//! The runtime asks [`op_factory`] for one generator per client thread and
//! calls it with the thread's random stream whenever a client is ready for
//! its next operation. Generators draw everything from that stream, so a
//! thread's workload is as reproducible as its seed. They write each
//! operation into the thread's one operation buffer and keep what they build
//! it from (a key, a value) in buffers of their own, so that drawing an
//! operation allocates nothing once the buffers have grown.
//!
//! - `Null { op_size }`: `op_size` zero bytes; the null application ignores
//!   them, so only their size matters.
//! - `Kv`: [`wire::kv::Op`]s in the codec's encoding: a `Get` with probability
//!   `read_ratio`, else a `Put` of `value_size` random bytes, on key `k<i>` with
//!   `i` uniform over `0..keys` or Zipf-distributed (rank 0 the hottest).
//!   Operations on the sampled keys ([`wire::history::sampled_keys`]) are
//!   marked for the run's history, and a put on one carries a value no other
//!   put carries ([`wire::history::tagged_value`]: the thread's seed, which
//!   is its first client's id, and its count of such puts), at least
//!   [`wire::history::TAG_BYTES`] long. Other keys cost a binary search of the
//!   few sampled ones.

use std::io::Write as _;
use std::sync::Arc;

use runtime::Rng;
use runtime::deploy::{OpFactory, OpSource};
use wire::control::{KeyDistribution, KvWorkload, Workload};
use wire::kv::Op;

/// Generators for `workload`, which must have passed
/// [`NodeConfig::validate`](wire::control::NodeConfig::validate) (sizes fit a
/// datagram, ratios are in range, a Zipf table fits in memory).
pub fn op_factory(workload: &Workload) -> OpFactory {
    match workload {
        Workload::Null {
            op_size,
            reply_size,
        } => {
            let op = wire::control::null_op(*op_size as usize, *reply_size);
            Arc::new(move |_thread| {
                let op = op.clone();
                Box::new(move |_: &mut Rng, out: &mut Vec<u8>| out.extend_from_slice(&op))
            })
        }
        Workload::Kv(kv) => {
            let ops = KvOps::new(kv);
            Arc::new(move |tag| {
                Box::new(KvSource {
                    ops: ops.clone(),
                    tag,
                    sampled_puts: 0,
                    key: Vec::new(),
                    value: Vec::new(),
                })
            })
        }
    }
}

/// One client thread's key-value generator.
#[derive(Debug)]
struct KvSource {
    ops: KvOps,
    /// Distinct for every thread of the run: the first of its client ids.
    tag: u64,
    /// Puts on sampled keys so far.
    sampled_puts: u64,
    /// What the last operation was built from, reused for the next.
    key: Vec<u8>,
    value: Vec<u8>,
}

impl OpSource for KvSource {
    /// The next operation (see [`KvOps::next`]), built from the source's
    /// key and value buffers, which it takes back once the operation is
    /// encoded.
    fn next_op(&mut self, rng: &mut Rng, out: &mut Vec<u8>) -> bool {
        let (key, value) = (&mut self.key, &mut self.value);
        let (op, recorded) = self
            .ops
            .next(rng, self.tag, &mut self.sampled_puts, key, value);
        wire::codec::encode(&op, out).expect("validated: a key-value op fits in a datagram");
        match op {
            Op::Put { key, value } => (self.key, self.value) = (key, value),
            Op::Get { key } | Op::Delete { key } => self.key = key,
        }
        recorded
    }
}

/// Draws key-value operations. Cloning shares the Zipf table.
#[derive(Clone, Debug)]
struct KvOps {
    keys: Keys,
    /// Recorded in the history, sorted ([`wire::history::sampled_keys`]).
    sampled: Arc<[u64]>,
    value_size: usize,
    read_ratio: f64,
}

impl KvOps {
    fn new(kv: &KvWorkload) -> KvOps {
        assert!(kv.keys > 0, "validated: keys > 0");
        let keys = match kv.distribution {
            KeyDistribution::Uniform => Keys::Uniform { keys: kv.keys },
            KeyDistribution::Zipf { exponent } => {
                Keys::Zipf(Arc::new(Zipf::new(kv.keys, exponent)))
            }
        };
        KvOps {
            keys,
            sampled: wire::history::sampled_keys(kv.keys).into(),
            value_size: kv.value_size as usize,
            read_ratio: kv.read_ratio,
        }
    }

    /// The next operation, with whether the history records it (it is on
    /// a sampled key), its key and value built in the buffers `key` and
    /// `value` (taken: the caller takes them back from the operation); a
    /// put on a sampled key takes the value `tagged_value(tag,
    /// *sampled_puts)` and counts itself.
    fn next(
        &self,
        rng: &mut Rng,
        tag: u64,
        sampled_puts: &mut u64,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> (Op, bool) {
        let index = self.keys.sample(rng);
        let recorded = self.sampled.binary_search(&index).is_ok();
        let mut key = std::mem::take(key);
        key.clear();
        write!(key, "k{index}").expect("writing to a vector cannot fail");
        let op = if rng.chance(self.read_ratio) {
            Op::Get { key }
        } else {
            let mut value = std::mem::take(value);
            value.clear();
            value.resize(self.value_size, 0);
            // Drawn for sampled keys too, so the stream of draws does not
            // depend on which keys are sampled.
            rng.fill(&mut value);
            if recorded {
                value = wire::history::tagged_value(tag, *sampled_puts, self.value_size);
                *sampled_puts += 1;
            }
            Op::Put { key, value }
        };
        (op, recorded)
    }
}

#[derive(Clone, Debug)]
enum Keys {
    Uniform { keys: u64 },
    Zipf(Arc<Zipf>),
}

impl Keys {
    fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            Keys::Uniform { keys } => rng.below(*keys),
            Keys::Zipf(zipf) => zipf.sample(rng),
        }
    }
}

/// Ranks `0..n` with `P(i)` proportional to `1 / (i + 1)^exponent`, sampled by
/// inverting a precomputed cumulative distribution with a binary search.
#[derive(Debug)]
struct Zipf {
    /// `cdf[i]` = P(rank <= i); the last entry is exactly 1.
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, exponent: f64) -> Zipf {
        assert!(n > 0 && exponent.is_finite() && exponent >= 0.0);
        let n = usize::try_from(n).expect("validated: at most ZIPF_KEYS_MAX keys");
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 0..n {
            total += ((rank + 1) as f64).powf(-exponent);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        // Rounding may leave the last entry a hair under 1; a draw in that gap
        // must still land on the last rank.
        *cdf.last_mut().expect("n > 0") = 1.0;
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> u64 {
        let u = unit(rng);
        let rank = self.cdf.partition_point(|&c| c <= u);
        rank.min(self.cdf.len() - 1) as u64
    }
}

/// Uniform in `[0, 1)` from 53 random bits.
fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(keys: u64, read_ratio: f64, distribution: KeyDistribution) -> Workload {
        Workload::Kv(KvWorkload {
            keys,
            value_size: 16,
            read_ratio,
            distribution,
        })
    }

    fn draw(workload: &Workload, count: usize) -> Vec<Op> {
        draw_marked(workload, 0, count)
            .into_iter()
            .map(|(op, _)| op)
            .collect()
    }

    /// `count` operations of the generator with seed `tag`, each with
    /// whether it is marked for the history.
    fn draw_marked(workload: &Workload, tag: u64, count: usize) -> Vec<(Op, bool)> {
        let mut ops = op_factory(workload)(tag);
        let mut rng = Rng::new(1);
        (0..count)
            .map(|_| {
                let mut op = Vec::new();
                let recorded = ops.next_op(&mut rng, &mut op);
                (wire::decode(&op).unwrap(), recorded)
            })
            .collect()
    }

    fn key_index(op: &Op) -> u64 {
        let key = std::str::from_utf8(op.key()).unwrap();
        key.strip_prefix('k').unwrap().parse().unwrap()
    }

    #[test]
    fn null_ops_have_the_configured_size() {
        let mut ops = op_factory(&Workload::Null {
            op_size: 32,
            reply_size: 0,
        })(3);
        let mut rng = Rng::new(1);
        let mut op = Vec::new();
        let recorded = ops.next_op(&mut rng, &mut op);
        assert_eq!(op, vec![0; 32]);
        assert!(!recorded, "null ops have no history");
        let mut ops = op_factory(&Workload::Null {
            op_size: 0,
            reply_size: 0,
        })(3);
        op.clear();
        ops.next_op(&mut rng, &mut op);
        assert!(op.is_empty());
    }

    #[test]
    fn kv_ops_follow_the_read_ratio_and_value_size() {
        let ops = draw(&kv(10, 0.25, KeyDistribution::Uniform), 4000);
        let gets = ops.iter().filter(|op| matches!(op, Op::Get { .. })).count();
        assert!((800..1200).contains(&gets), "{gets} gets of 4000");
        for op in &ops {
            assert!(key_index(op) < 10);
            match op {
                Op::Put { value, .. } => assert_eq!(value.len(), 16),
                Op::Get { .. } => {}
                Op::Delete { .. } => panic!("no deletes in this workload"),
            }
        }
        assert!(
            draw(&kv(10, 1.0, KeyDistribution::Uniform), 100)
                .iter()
                .all(|op| matches!(op, Op::Get { .. }))
        );
        assert!(
            draw(&kv(10, 0.0, KeyDistribution::Uniform), 100)
                .iter()
                .all(|op| matches!(op, Op::Put { .. }))
        );
    }

    /// Exactly the operations on sampled keys are marked; their puts carry
    /// values unique across threads and within one, of the configured size;
    /// other puts' values are random.
    #[test]
    fn sampled_keys_are_marked_and_their_puts_unique() {
        let workload = kv(160, 0.5, KeyDistribution::Uniform);
        let sampled = wire::history::sampled_keys(160);
        assert_eq!(sampled.len(), 8);
        let mut values = std::collections::HashSet::new();
        let mut marked_puts = 0;
        for tag in [1, 51] {
            for (op, marked) in draw_marked(&workload, tag, 4000) {
                assert_eq!(marked, sampled.contains(&key_index(&op)), "{op:?}");
                if let Op::Put { value, .. } = &op {
                    assert_eq!(value.len(), 16);
                    if marked {
                        marked_puts += 1;
                        assert_eq!(&value[..8], &tag.to_le_bytes());
                        assert!(values.insert(value.clone()), "a value put twice");
                    } else {
                        assert_ne!(&value[..8], &tag.to_le_bytes());
                    }
                }
            }
        }
        // 8 of 160 keys, half of the ops puts, two threads of 4000.
        assert!((140..260).contains(&marked_puts), "{marked_puts}");
        // Values shorter than a tag grow to one; longer ones keep their size.
        for (size, expected) in [(4, wire::history::TAG_BYTES), (100, 100)] {
            let workload = Workload::Kv(KvWorkload {
                keys: 1,
                value_size: size,
                read_ratio: 0.0,
                distribution: KeyDistribution::Uniform,
            });
            for (op, marked) in draw_marked(&workload, 9, 10) {
                assert!(marked);
                let Op::Put { value, .. } = op else { panic!() };
                assert_eq!(value.len(), expected);
            }
        }
    }

    #[test]
    fn uniform_keys_cover_the_range() {
        let mut seen = [0u32; 8];
        for op in draw(&kv(8, 0.5, KeyDistribution::Uniform), 8000) {
            seen[key_index(&op) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn zipf_matches_its_distribution() {
        // exponent 1 over 100 keys: P(rank 0) = 1 / H(100) ≈ 0.193, P(rank 1)
        // half that.
        let workload = kv(100, 0.5, KeyDistribution::Zipf { exponent: 1.0 });
        let mut counts = [0u32; 100];
        let draws = 20_000;
        for op in draw(&workload, draws) {
            counts[key_index(&op) as usize] += 1;
        }
        let p0 = f64::from(counts[0]) / draws as f64;
        let p1 = f64::from(counts[1]) / draws as f64;
        assert!((0.18..0.21).contains(&p0), "P(k0) = {p0}");
        assert!((0.085..0.11).contains(&p1), "P(k1) = {p1}");
        assert!(counts[99] < counts[0] / 50, "{counts:?}");
    }

    #[test]
    fn zipf_edge_cases() {
        let mut rng = Rng::new(5);
        let one = Zipf::new(1, 1.2);
        assert!((0..100).all(|_| one.sample(&mut rng) == 0));
        // Exponent 0 is uniform.
        let flat = Zipf::new(4, 0.0);
        assert_eq!(flat.cdf, vec![0.25, 0.5, 0.75, 1.0]);
        let mut seen = [0u32; 4];
        for _ in 0..4000 {
            seen[flat.sample(&mut rng) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (850..1150).contains(&n)), "{seen:?}");
    }
}
