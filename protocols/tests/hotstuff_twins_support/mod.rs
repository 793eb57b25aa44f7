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
pub const PHASES_MAX: u64 = 4;

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
        let until = at + rng.between(10, 120);
        let mut sides = [vec![T1], vec![T2]];
        for other in [A, B, C, client(1), client(2)] {
            sides[rng.below(2) as usize].push(other.into());
        }
        phases.push(Phase {
            from: Duration::from_millis(at),
            until: Duration::from_millis(until),
            sides,
        });
        at = until + rng.between(0, 30);
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
/// correct replicas caught up. With `trace`, keeps the timeline.
pub fn run(seed: u64, phases: &[Phase], real_keys: bool, trace: bool) -> TwinRun {
    let keys = if real_keys {
        hotstuff::keys(seed, 4)
    } else {
        hotstuff::simulated_keys(seed, 4)
    };
    let config = hotstuff::config(&keys);
    let mut sim = Simulator::new(seed, Network::faulty(0.01));
    if trace {
        sim.enable_trace();
    }
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
    TwinRun {
        failure,
        ops_completed: sim.ops_completed(),
        sim,
        log,
    }
}

/// A sweep: every fixed schedule and `drawn` drawn ones, each under
/// `seeds` seeds. Every failure, with its schedule and seed.
pub fn sweep(seeds: u64, drawn: u64) -> Vec<String> {
    let mut all = schedules();
    let mut rng = Rng::new(0x7715);
    let drawn: Vec<Vec<Phase>> = (0..drawn).map(|_| draw_schedule(&mut rng)).collect();
    for (i, phases) in drawn.into_iter().enumerate() {
        all.push((format!("drawn {i}"), phases));
    }
    let mut failures = Vec::new();
    for (name, phases) in &all {
        for seed in 0..seeds {
            let run = run(seed, phases, false, false);
            if let Some(why) = run.failure {
                failures.push(format!("{name} {phases:?}, seed {seed}: {why}"));
            }
        }
    }
    failures
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
