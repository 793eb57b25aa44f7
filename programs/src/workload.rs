//! The operations benchmark clients issue, made from a [`Workload`].
//!
//! The runtime asks [`op_factory`] for one generator per client thread and
//! calls it with the thread's random stream whenever a client is ready for
//! its next operation. Generators draw everything from that stream, so a
//! thread's workload is as reproducible as its seed.
//!
//! - `Null { op_size }`: `op_size` zero bytes; the null application ignores
//!   them, so only their size matters.
//! - `Kv`: [`wire::kv::Op`]s in the codec's encoding: a `Get` with probability
//!   `read_ratio`, else a `Put` of `value_size` random bytes, on key `k<i>` with
//!   `i` uniform over `0..keys` or Zipf-distributed (rank 0 the hottest).

use std::sync::Arc;

use runtime::Rng;
use runtime::deploy::OpFactory;
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
                Box::new(move |_rng: &mut Rng| op.clone())
            })
        }
        Workload::Kv(kv) => {
            let ops = KvOps::new(kv);
            Arc::new(move |_thread| {
                let ops = ops.clone();
                Box::new(move |rng: &mut Rng| ops.next(rng))
            })
        }
    }
}

/// Draws key-value operations. Cloning shares the Zipf table.
#[derive(Clone, Debug)]
struct KvOps {
    keys: Keys,
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
            value_size: kv.value_size as usize,
            read_ratio: kv.read_ratio,
        }
    }

    fn next(&self, rng: &mut Rng) -> Vec<u8> {
        let key = format!("k{}", self.keys.sample(rng)).into_bytes();
        let op = if rng.chance(self.read_ratio) {
            Op::Get { key }
        } else {
            let mut value = vec![0; self.value_size];
            rng.fill(&mut value);
            Op::Put { key, value }
        };
        wire::codec::encode_to_vec(&op).expect("validated: a key-value op fits in a datagram")
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
        let mut ops = op_factory(workload)(0);
        let mut rng = Rng::new(1);
        (0..count)
            .map(|_| wire::decode(&ops(&mut rng)).unwrap())
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
        assert_eq!(ops(&mut rng), vec![0; 32]);
        let mut ops = op_factory(&Workload::Null {
            op_size: 0,
            reply_size: 0,
        })(3);
        assert!(ops(&mut rng).is_empty());
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
