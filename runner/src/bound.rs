//! The bound a protocol's throughput is judged against: the cryptography
//! and the datagrams it did per committed operation, priced at unit costs
//! measured on this machine in the same run, over the CPU the point had.
//!
//! Every node counts its signatures, signature checks, MACs and digests
//! ([`wire::crypto::tally`]) and its datagrams; the counts over a point's
//! whole run divided by its operations say what an operation needed. The
//! prices:
//!
//! - signatures, checks, MACs and digests: timed by the runner just before
//!   the first point ([`UnitCosts::measure`]), a MAC and a digest as a fixed
//!   cost plus a cost per byte (two sizes each);
//! - a datagram: what the unreplicated baseline spends per datagram at the
//!   same load, its CPU (servers and clients, idle polling out) over the
//!   datagrams its nodes sent and received. The baseline does nothing else
//!   per operation but keep its client table and time the operation, so
//!   this is our runtime's price of moving a datagram, generous to the
//!   protocol (it pays for no decoding or bookkeeping of its own).
//!
//! Only a run whose nodes all run on the runner's machine (local or
//! namespace hosts) has a bound: with ssh hosts the prices and the cores
//! would be another machine's.
//!
//! The bound in ops/s is the CPU the point's nodes had (the machine's
//! cores; under `--equal-cpu` the per-node quota times the nodes, at most
//! the cores) over that cost per operation. What a protocol reaches of it
//! says how much of its CPU goes to anything but cryptography and
//! datagrams: its own logic, and the framework's overhead.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wire::control::{DATAGRAMS_RECEIVED_COUNTER, DATAGRAMS_SENT_COUNTER};
use wire::crypto::tally;
use wire::crypto::{Digest, MacKey, SecretKey, Signer, verify_digest};

use crate::results::{PointResult, RunResults, thousands};
use crate::timeline::aligned;

/// What one piece of cryptography costs on this machine, µs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitCosts {
    /// A secp256k1 signature over a digest.
    pub sign_us: f64,
    /// A secp256k1 signature check against a parsed key.
    pub verify_us: f64,
    /// An HMAC-SHA256: fixed cost, and per byte covered.
    pub mac_us: f64,
    pub mac_us_per_byte: f64,
    /// A SHA-256 digest: fixed cost, and per byte.
    pub digest_us: f64,
    pub digest_us_per_byte: f64,
}

/// Each unit cost is the median of this many samples of [`SAMPLE`] each:
/// on a shared machine a single sample catches other work now and then.
const SAMPLES: usize = 5;
const SAMPLE: Duration = Duration::from_millis(12);

impl UnitCosts {
    /// Times each operation [`SAMPLES`] times for [`SAMPLE`] (about half a
    /// second in all), on the calling thread.
    pub fn measure() -> UnitCosts {
        let secret = SecretKey::from_seed(b"unit costs");
        let signer = Signer::new(&secret).expect("a seeded key is valid");
        let key = signer
            .public_key()
            .parse()
            .expect("our own public key parses");
        let digest = Digest::of(b"unit costs");
        let signature = signer.sign_digest(&digest);
        let sign_us = time(|| {
            std::hint::black_box(signer.sign_digest(std::hint::black_box(&digest)));
        });
        let verify_us = time(|| {
            let checked = verify_digest(std::hint::black_box(&digest), &signature, &key);
            std::hint::black_box(checked).expect("our own signature checks");
        });
        let mac_key = MacKey::new(&[7; 32]);
        let (small, large) = (vec![1u8; 64], vec![1u8; 4096]);
        let (mac_us, mac_us_per_byte) = linear(
            (
                small.len(),
                time(|| {
                    std::hint::black_box(mac_key.mac(&small));
                }),
            ),
            (
                large.len(),
                time(|| {
                    std::hint::black_box(mac_key.mac(&large));
                }),
            ),
        );
        let (digest_us, digest_us_per_byte) = linear(
            (
                small.len(),
                time(|| {
                    std::hint::black_box(Digest::of(&small));
                }),
            ),
            (
                large.len(),
                time(|| {
                    std::hint::black_box(Digest::of(&large));
                }),
            ),
        );
        UnitCosts {
            sign_us,
            verify_us,
            mac_us,
            mac_us_per_byte,
            digest_us,
            digest_us_per_byte,
        }
    }

    /// One line for the table's header.
    pub fn describe(&self) -> String {
        format!(
            "signature {:.1} µs, check {:.1} µs, MAC {:.2} µs + {:.1} ns/byte, \
             digest {:.2} µs + {:.1} ns/byte",
            self.sign_us,
            self.verify_us,
            self.mac_us,
            self.mac_us_per_byte * 1000.0,
            self.digest_us,
            self.digest_us_per_byte * 1000.0
        )
    }
}

/// Median over [`SAMPLES`] of the mean µs per call of `f` over [`SAMPLE`],
/// after a short warm-up.
fn time(mut f: impl FnMut()) -> f64 {
    for _ in 0..16 {
        f();
    }
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            let mut calls = 0u64;
            while start.elapsed() < SAMPLE {
                for _ in 0..8 {
                    f();
                }
                calls += 8;
            }
            start.elapsed().as_secs_f64() * 1e6 / calls as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[SAMPLES / 2]
}

/// Fixed and per-byte cost through two (bytes, µs) samples, neither below
/// zero.
fn linear((small, at_small): (usize, f64), (large, at_large): (usize, f64)) -> (f64, f64) {
    let per_byte = ((at_large - at_small) / (large - small) as f64).max(0.0);
    ((at_small - per_byte * small as f64).max(0.0), per_byte)
}

/// One point's cost per operation, counted and priced.
#[derive(Clone, Debug, PartialEq)]
pub struct Breakdown {
    pub signatures: f64,
    pub verifications: f64,
    pub macs: f64,
    pub digests: f64,
    /// Sent and received, every node together.
    pub datagrams: f64,
    pub crypto_us: f64,
    pub datagram_us: f64,
    /// Measured: the CPU every node spent per operation, idle polling out.
    pub cpu_us: f64,
    /// The CPU the point's nodes had, in cores.
    pub cores: f64,
    /// `cores` over `crypto_us + datagram_us`, ops/s.
    pub bound_ops: f64,
    pub throughput_ops: f64,
}

impl Breakdown {
    pub fn bound_us(&self) -> f64 {
        self.crypto_us + self.datagram_us
    }

    /// Throughput over the bound.
    pub fn of_bound(&self) -> f64 {
        self.throughput_ops / self.bound_ops
    }
}

/// Per-operation counts of `counter` over the point's run.
fn per_op(point: &PointResult, counter: &str) -> f64 {
    point.counter(counter) as f64 / point.run_ops() as f64
}

fn datagrams_per_op(point: &PointResult) -> f64 {
    per_op(point, DATAGRAMS_SENT_COUNTER) + per_op(point, DATAGRAMS_RECEIVED_COUNTER)
}

/// The baseline's CPU per datagram at `point`'s load (mean over its
/// trials), µs; `None` without a baseline point there.
fn datagram_us(results: &RunResults, point: &PointResult) -> Option<f64> {
    let prices: Vec<f64> = results
        .points
        .iter()
        .filter(|p| {
            p.protocol == "unreplicated"
                && p.clients == point.clients
                && p.offered_ops == point.offered_ops
                && p.run_ops() > 0
        })
        .filter_map(|p| Some(p.cpu_us_per_op()? / datagrams_per_op(p)))
        .filter(|price| price.is_finite())
        .collect();
    (!prices.is_empty()).then(|| prices.iter().sum::<f64>() / prices.len() as f64)
}

/// `point`'s breakdown; `None` for the baseline itself, for a point with no
/// operations, and without unit costs or a baseline at its load.
pub fn breakdown(results: &RunResults, point: &PointResult) -> Option<Breakdown> {
    if point.protocol == "unreplicated" || point.run_ops() == 0 {
        return None;
    }
    let costs = results.provenance.unit_costs?;
    let datagram_price = datagram_us(results, point)?;
    let signatures = per_op(point, tally::SIGNATURES);
    let verifications = per_op(point, tally::VERIFICATIONS);
    let macs = per_op(point, tally::MACS);
    let digests = per_op(point, tally::DIGESTS);
    let crypto_us = signatures * costs.sign_us
        + verifications * costs.verify_us
        + macs * costs.mac_us
        + per_op(point, tally::MAC_BYTES) * costs.mac_us_per_byte
        + digests * costs.digest_us
        + per_op(point, tally::DIGEST_BYTES) * costs.digest_us_per_byte;
    let datagrams = datagrams_per_op(point);
    let datagram_us = datagrams * datagram_price;
    let machine = results.provenance.cores.max(1) as f64;
    // The replicas and services that reported, and the clients node.
    let nodes = point.node_cpu.len() as f64 + 1.0;
    let cores = results
        .recorded_experiment()
        .and_then(|experiment| experiment.cpu_per_node(results.provenance.cores))
        .map_or(machine, |quota| (quota * nodes).min(machine));
    Some(Breakdown {
        signatures,
        verifications,
        macs,
        digests,
        datagrams,
        crypto_us,
        datagram_us,
        cpu_us: point.cpu_us_per_op()?,
        cores,
        bound_ops: cores * 1e6 / (crypto_us + datagram_us),
        throughput_ops: point.throughput_ops,
    })
}

/// The table the runner prints after the summary: every point but the
/// baseline's, its counts and costs per operation against its bound.
/// `None` when no point has a breakdown.
pub fn bound_table(results: &RunResults) -> Option<String> {
    let costs = results.provenance.unit_costs?;
    let mut rows = vec![[
        "point".to_string(),
        "sig/op".to_string(),
        "check/op".to_string(),
        "MAC/op".to_string(),
        "digest/op".to_string(),
        "dgram/op".to_string(),
        "crypto µs".to_string(),
        "dgram µs".to_string(),
        "CPU µs".to_string(),
        "bound ops/s".to_string(),
        "of bound".to_string(),
    ]];
    for point in &results.points {
        let Some(b) = breakdown(results, point) else {
            continue;
        };
        rows.push([
            crate::timeline::point_label(point),
            format!("{:.2}", b.signatures),
            format!("{:.2}", b.verifications),
            format!("{:.2}", b.macs),
            format!("{:.2}", b.digests),
            format!("{:.2}", b.datagrams),
            format!("{:.2}", b.crypto_us),
            format!("{:.2}", b.datagram_us),
            format!("{:.2}", b.cpu_us),
            thousands(b.bound_ops.round() as u64),
            format!("{:.2}", b.of_bound()),
        ]);
    }
    if rows.len() == 1 {
        return None;
    }
    let mut out = String::from("cost per operation against the crypto-and-datagram bound:\n");
    out.push_str(&aligned(&rows));
    let _ = writeln!(
        out,
        "counts per committed operation over the whole run, every node and the clients together; \
         priced at {}; a datagram at the baseline's CPU per datagram at the same load. \
         CPU µs: what the nodes spent per operation, idle polling out. bound: the point's cores \
         over crypto + datagram µs",
        costs.describe()
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_fit_through_two_sizes() {
        let (fixed, per_byte) = linear((64, 1.0), (4096, 9.0));
        assert!((per_byte - 8.0 / 4032.0).abs() < 1e-12);
        assert!((fixed - (1.0 - 64.0 * 8.0 / 4032.0)).abs() < 1e-12);
        // Noise that makes the large sample cheaper is no negative price.
        assert_eq!(linear((64, 1.0), (4096, 0.5)), (1.0, 0.0));
    }

    /// The sample's baseline and PBFT at 64 clients, with unit costs and
    /// counts chosen so that each term is easy to follow.
    fn priced() -> RunResults {
        let mut results = crate::results::tests::sample_with_trials(1);
        results.provenance.cores = 2;
        results.provenance.unit_costs = Some(UnitCosts {
            sign_us: 20.0,
            verify_us: 30.0,
            mac_us: 0.2,
            mac_us_per_byte: 0.001,
            digest_us: 0.1,
            digest_us_per_byte: 0.002,
        });
        for point in &mut results.points {
            let ops = point.run_ops();
            let counts: &[(&str, u64)] = if point.protocol == "unreplicated" {
                &[(DATAGRAMS_SENT_COUNTER, 2), (DATAGRAMS_RECEIVED_COUNTER, 2)]
            } else {
                &[
                    (DATAGRAMS_SENT_COUNTER, 5),
                    (DATAGRAMS_RECEIVED_COUNTER, 5),
                    (tally::MACS, 16),
                    (tally::MAC_BYTES, 1600),
                    (tally::DIGESTS, 1),
                    (tally::DIGEST_BYTES, 500),
                ]
            };
            point.counters = counts
                .iter()
                .map(|&(name, per_op)| (name.to_owned(), per_op * ops))
                .collect();
            if point.protocol == "pbft" {
                // One signature and two checks every 100 operations.
                point
                    .counters
                    .insert(tally::SIGNATURES.to_owned(), ops / 100);
                point
                    .counters
                    .insert(tally::VERIFICATIONS.to_owned(), ops / 50);
            }
        }
        results
    }

    #[test]
    fn breakdown_prices_the_counts_per_operation() {
        let results = priced();
        let baseline = &results.points[4];
        let pbft = &results.points[5];
        assert_eq!(
            (baseline.protocol.as_str(), pbft.protocol.as_str()),
            ("unreplicated", "pbft")
        );
        assert!(
            breakdown(&results, baseline).is_none(),
            "no bound for the baseline"
        );
        let b = breakdown(&results, pbft).unwrap();
        assert!((b.signatures - 0.01).abs() < 1e-3 && (b.verifications - 0.02).abs() < 1e-3);
        assert_eq!((b.macs, b.digests, b.datagrams), (16.0, 1.0, 10.0));
        // 0.01 × 20 + 0.02 × 30 + 16 × 0.2 + 1600 × 0.001 + 0.1 + 500 × 0.002.
        let crypto = 0.2 + 0.6 + 3.2 + 1.6 + 0.1 + 1.0;
        assert!((b.crypto_us - crypto).abs() < 0.01, "{}", b.crypto_us);
        // The baseline's CPU per operation over its four datagrams, ten times.
        let datagram = baseline.cpu_us_per_op().unwrap() / 4.0;
        assert!((b.datagram_us - 10.0 * datagram).abs() < 1e-9);
        assert_eq!(b.cores, 2.0);
        assert!((b.bound_ops - 2e6 / (crypto + 10.0 * datagram)).abs() < 20.0);
        assert!((b.of_bound() - pbft.throughput_ops / b.bound_ops).abs() < 1e-12);

        let table = bound_table(&results).unwrap();
        assert!(table.contains("pbft, 64 clients, trial 0"), "{table}");
        assert!(!table.contains("unreplicated"), "{table}");
        assert!(table.contains("signature 20.0 µs"), "{table}");
    }

    #[test]
    fn no_bound_without_unit_costs_or_a_baseline_at_the_load() {
        let mut results = priced();
        results
            .points
            .retain(|p| p.protocol != "unreplicated" || p.clients != 64);
        assert!(breakdown(&results, results.points.last().unwrap()).is_none());
        assert!(breakdown(&results, &results.points[1]).is_some());
        results.provenance.unit_costs = None;
        assert!(bound_table(&results).is_none());
    }

    #[test]
    fn equal_cpu_bounds_by_the_quota_of_every_node() {
        let mut results = priced();
        let mut experiment = results.recorded_experiment().unwrap();
        experiment.equal_cpu = Some(crate::experiment::EqualCpu::Cores(0.25));
        results.experiment = serde_json::to_value(&experiment).unwrap();
        let b = breakdown(&results, &results.points[5]).unwrap();
        // Two nodes in the sample and the clients node, a quarter core each.
        assert_eq!(b.cores, 0.75);
    }

    #[test]
    fn unit_costs_are_positive_and_ordered() {
        let costs = UnitCosts::measure();
        assert!(costs.sign_us > 0.0 && costs.verify_us > 0.0);
        // A MAC is far cheaper than a signature on any machine.
        assert!(costs.mac_us < costs.sign_us);
        assert!(costs.digest_us < costs.verify_us);
    }
}
