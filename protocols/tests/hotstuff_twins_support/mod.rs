//! Twins scenarios for HotStuff (Bano, Buchnik, Dinesh, Howard, Kaplan,
//! Malkhi, Mehta, "Twins: BFT Systems Made Robust", OPODIS 2021), shared by
//! `hotstuff_twins.rs` and the planted-bug catches in `planted.rs`.
//!
//! Replica [`L`], the leader of views 1, 5, 9, ... of an n = 4 group, runs
//! twice: the replica added first ([`T1`]) and a twin ([`T2`]) with the
//! same identity and key, both correct code. A schedule of partitions puts
//! them with different audiences, so that each proposes its own block for
//! the views it leads and votes for what its side shows it: together they
//! equivocate as a Byzantine leader would (the paper's §3). The replica is
//! left out of the agreement check; the three others must agree, the
//! clients' history must be linearizable, and every client must finish
//! within the liveness bound after the last heal.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use protocols::hotstuff::LIVENESS_BOUND;
use protocols::hotstuff::simulate::{self as hotstuff, IDLE_SLACK, SETTLE, TIME_LIMIT};
use protocols::simulate::{ExecutionLog, KvWorkload, check, check_caught_up};
use runtime::sim::{Network, NodeRef, Simulator, TraceEvent};
use runtime::{Addr, ClientId, ReplicaId, Rng, Time};

/// The twinned replica: the leader of views 1, 5, 9, ...
pub const L: u8 = 1;

/// Its copy added first, and its twin.
pub const T1: NodeRef = NodeRef {
    addr: Addr::Replica(ReplicaId(L)),
    copy: 0,
};
pub const T2: NodeRef = NodeRef {
    addr: Addr::Replica(ReplicaId(L)),
    copy: 1,
};

/// The correct replicas.
pub const A: Addr = Addr::Replica(ReplicaId(2));
pub const B: Addr = Addr::Replica(ReplicaId(3));
pub const C: Addr = Addr::Replica(ReplicaId(0));

/// Clients of a run, ids 1..=CLIENTS.
pub const CLIENTS: u64 = 2;

/// Operations per client.
pub const OPS: u64 = 20;

/// Phases a drawn schedule has at most.
pub const PHASES_MAX: u64 = 6;

pub fn client(id: u64) -> Addr {
    Addr::Client(ClientId(id))
}

/// One phase of a schedule: from `from` to `until` the network is split in
/// two sides (whoever is named on neither is cut off from both); at
/// `until` it heals.
#[derive(Clone, Debug)]
pub struct Phase {
    pub from: Duration,
    pub until: Duration,
    pub sides: [Vec<NodeRef>; 2],
}

/// The scenario of the issue: {T1, A, B} | {T2, C} for 300 ms, one client
/// on each side, then the heal.
pub fn split_leader() -> Vec<Phase> {
    vec![Phase {
        from: Duration::ZERO,
        until: Duration::from_millis(300),
        sides: [
            vec![T1, A.into(), B.into(), client(1).into()],
            vec![T2, C.into(), client(2).into()],
        ],
    }]
}

/// Fixed schedules for the sweep: the split, the twin with the
/// majority, the audiences swapped half-way (the twin that led the
/// minority now leads the majority), a rotation of three splits, and quick
/// flips back and forth with healed gaps between them (both twins heard by
/// everyone).
pub fn schedules() -> Vec<(String, Vec<Phase>)> {
    let ms = Duration::from_millis;
    let phase = |from: u64, until: u64, one: &[NodeRef], two: &[NodeRef]| Phase {
        from: ms(from),
        until: ms(until),
        sides: [one.to_vec(), two.to_vec()],
    };
    let (a, b, c) = (A.into(), B.into(), C.into());
    let (c1, c2): (NodeRef, NodeRef) = (client(1).into(), client(2).into());
    let named = vec![
        ("split leader", split_leader()),
        (
            "twin with the majority",
            vec![phase(0, 300, &[T1, a, c1], &[T2, b, c, c2])],
        ),
        (
            "audiences swapped",
            vec![
                phase(0, 150, &[T1, a, b, c1], &[T2, c, c2]),
                phase(150, 300, &[T1, c, c1], &[T2, a, b, c2]),
            ],
        ),
        (
            "rotation",
            vec![
                phase(0, 100, &[T1, a, b, c1], &[T2, c, c2]),
                phase(100, 200, &[T1, b, c1], &[T2, a, c, c2]),
                phase(200, 300, &[T1, a, c, c1, c2], &[T2, b]),
            ],
        ),
        (
            "flips",
            vec![
                phase(0, 40, &[T1, a, b, c1], &[T2, c, c2]),
                phase(60, 100, &[T1, c, c1], &[T2, a, b, c2]),
                phase(120, 160, &[T1, a, b, c1], &[T2, c, c2]),
                phase(180, 220, &[T1, c, c2], &[T2, a, b, c1]),
            ],
        ),
    ];
    named
        .into_iter()
        .map(|(name, phases)| (name.to_string(), phases))
        .collect()
}

/// A schedule drawn from `rng`: one to [`PHASES_MAX`] phases in the first
/// 300 ms, each splitting the correct replicas and the clients at random
/// between the twins, with healed gaps between some.
pub fn draw_schedule(rng: &mut Rng) -> Vec<Phase> {
    let mut at = rng.between(0, 20);
    let mut phases = Vec::new();
    for _ in 0..rng.between(1, PHASES_MAX) {
        let until = at + rng.between(5, 80);
        let mut sides = [vec![T1], vec![T2]];
        for other in [A, B, C, client(1), client(2)] {
            sides[rng.below(2) as usize].push(other.into());
        }
        phases.push(Phase {
            from: Duration::from_millis(at),
            until: Duration::from_millis(until),
            sides,
        });
        at = until + rng.between(0, 20);
    }
    phases
}

/// What a twin run did.
#[derive(Debug)]
pub struct TwinRun {
    /// The first check that failed, if one did.
    pub failure: Option<String>,
    pub ops_completed: u64,
    pub sim: Simulator,
    pub log: ExecutionLog,
}

/// Runs the four replicas (with simulated keys, or real ones if `real_keys`)
/// and the twin under `phases` from `seed`, two clients of [`OPS`]
/// operations each, until the clients finish or the liveness bound passes
/// after the last heal; then lets the group settle and checks that the
/// correct replicas caught up, and that they committed the same block at
/// every height ([`conflicting_commits`]).
pub fn run(seed: u64, phases: &[Phase], real_keys: bool) -> TwinRun {
    let keys = if real_keys {
        hotstuff::keys(seed, 4)
    } else {
        hotstuff::simulated_keys(seed, 4)
    };
    let config = hotstuff::config(&keys);
    // Odd seeds hold some datagrams back for up to 100 ms, so that they
    // arrive after the partitions have changed.
    let network = if seed % 2 == 1 {
        Network::laggy(0.02, Duration::from_millis(100))
    } else {
        Network::faulty(0.01)
    };
    let mut sim = Simulator::new(seed, network);
    // Always: the check of committed blocks reads the trace.
    sim.enable_trace();
    let log = ExecutionLog::default();
    sim.set_workload(
        KvWorkload::default().into_workload(),
        Duration::from_millis(1),
    );
    for (i, key) in keys.iter().enumerate() {
        hotstuff::add_replica(&mut sim, &log, &config, key, i as u8);
    }
    let id = ReplicaId(L);
    let twin = sim.add_twin(
        Addr::Replica(id),
        hotstuff::replica_factory(&log, &config, &keys[usize::from(L)], id),
    );
    assert_eq!(twin, T2);
    log.exclude(id);
    for id in 1..=CLIENTS {
        hotstuff::add_client(&mut sim, &config, id, OPS);
    }
    for phase in phases {
        let sides = phase.sides.clone();
        sim.schedule_fault(Time::ZERO + phase.from, move |sim| {
            sim.partition_nodes(&[&sides[0], &sides[1]]);
        });
        sim.schedule_fault(Time::ZERO + phase.until, Simulator::heal);
    }
    sim.run_until_live(LIVENESS_BOUND, Time::ZERO + TIME_LIMIT);
    let mut failure = check(&sim, &log).err();
    if failure.is_none() {
        let settled = sim.now() + SETTLE;
        sim.run_until(settled);
        failure = check_caught_up(&sim, &log, IDLE_SLACK).err();
    }
    if let Some(conflict) = conflicting_commits(sim.trace().expect("traced")) {
        failure = Some(conflict);
    }
    TwinRun {
        failure,
        ops_completed: sim.ops_completed(),
        sim,
        log,
    }
}

/// The sweep's schedules: every fixed one and `drawn` drawn ones.
pub fn all_schedules(drawn: u64) -> Vec<(String, Vec<Phase>)> {
    let mut all = schedules();
    let mut rng = Rng::new(0x7715);
    for i in 0..drawn {
        all.push((format!("drawn {i}"), draw_schedule(&mut rng)));
    }
    all
}

/// A sweep: every schedule of [`all_schedules`] under seeds `0..seeds`.
/// Every failure, with its schedule and seed.
pub fn sweep(seeds: u64, drawn: u64) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, phases) in &all_schedules(drawn) {
        for seed in 0..seeds {
            if let Some(why) = run(seed, phases, false).failure {
                failures.push(format!("{name} {phases:?}, seed {seed}: {why}"));
            }
        }
    }
    failures
}

/// A failed run of a sweep: which schedule of [`all_schedules`], which
/// seed, and why.
#[derive(Clone, Debug)]
pub struct Failure {
    pub schedule: usize,
    pub name: String,
    pub seed: u64,
    pub why: String,
}

/// The first run of the sweep that fails or panics (a replica's own
/// assertion), seed by seed over every schedule of
/// [`all_schedules`]`(drawn)`, with seeds `0..seeds`.
pub fn first_failure(seeds: u64, drawn: u64) -> Option<Failure> {
    let schedules = all_schedules(drawn);
    (0..seeds).find_map(|seed| {
        schedules
            .iter()
            .enumerate()
            .find_map(|(schedule, (name, phases))| {
                let why = checked_run(seed, phases)?;
                Some(Failure {
                    schedule,
                    name: name.clone(),
                    seed,
                    why,
                })
            })
    })
}

/// Why the run of `phases` under `seed` failed or panicked, if it did.
pub fn checked_run(seed: u64, phases: &[Phase]) -> Option<String> {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(seed, phases, false).failure
    }));
    run.unwrap_or_else(|_| Some("panic".to_string()))
}

/// Two correct replicas that committed different blocks at one height,
/// read from the `executed h<height> v<view>` lines replicas note: blocks
/// of one height from different views are different blocks. Sharper than
/// the agreement check of what the application executed, to which two
/// different empty blocks look alike.
pub fn conflicting_commits(trace: &[TraceEvent]) -> Option<String> {
    let mut committed: BTreeMap<u64, (Addr, u64)> = BTreeMap::new();
    for event in trace {
        let Some(node) = event.node else { continue };
        if node == T1.addr || !matches!(node, Addr::Replica(_)) {
            continue;
        }
        let Some(rest) = event.what.strip_prefix("executed h") else {
            continue;
        };
        let mut words = rest.split(' ');
        let height = words.next().and_then(|h| h.parse::<u64>().ok());
        let view = words
            .next()
            .and_then(|v| v.strip_prefix('v'))
            .and_then(|v| v.parse::<u64>().ok());
        let (Some(height), Some(view)) = (height, view) else {
            continue;
        };
        match committed.get(&height) {
            Some(&(other, other_view)) if other_view != view => {
                return Some(format!(
                    "agreement: {other} committed the block of view {other_view} at height \
                     {height}, {node} the block of view {view}"
                ));
            }
            Some(_) => {}
            None => {
                committed.insert(height, (node, view));
            }
        }
    }
    None
}

/// Views in which the two copies of [`L`] sent different proposals that
/// were delivered, read from a run's trace.
pub fn equivocated_views(trace: &[TraceEvent]) -> BTreeSet<u64> {
    let prefix = format!("<- {}: proposal v", T1.addr);
    let mut proposals: BTreeMap<u64, BTreeSet<(bool, String)>> = BTreeMap::new();
    for event in trace {
        let Some(rest) = event.what.strip_prefix(&prefix) else {
            continue;
        };
        let (rest, twin) = match rest.strip_suffix(" (from twin 1)") {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let Some(view) = rest.split(' ').next().and_then(|v| v.parse().ok()) else {
            continue;
        };
        proposals
            .entry(view)
            .or_default()
            .insert((twin, rest.to_string()));
    }
    proposals
        .into_iter()
        .filter(|(_, sent)| {
            let by = |twin: bool| -> BTreeSet<&String> {
                sent.iter()
                    .filter(|(t, _)| *t == twin)
                    .map(|(_, d)| d)
                    .collect()
            };
            let (first, second) = (by(false), by(true));
            !first.is_empty() && !second.is_empty() && first != second
        })
        .map(|(view, _)| view)
        .collect()
}
