//! One fixed simulator workload per protocol, for counting instructions.
//!
//! Runs a fault-free, deterministic simulation (reliable network, fixed
//! seed, the default key-value workload, closed-loop clients) of the
//! protocol named on the command line until every client is done, and
//! prints how many operations the clients completed. Under
//! `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect='*instructions_measured_run*'` only the run itself is
//! counted, not building the system (keys, nodes) or tearing it down;
//! `scripts/instructions` does that for every protocol and divides by the
//! operations. See docs/INSTRUCTIONS.md.
//!
//! `sim_workload <protocol>` runs one; `sim_workload --list` prints the
//! protocols, one a line.

use std::process::ExitCode;
use std::time::Duration;

use runtime::Time;
use runtime::sim::{Network, Simulator};

/// The seed of every run.
const SEED: u64 = 1;

/// Virtual time a run may take at most; a fault-free run needs far less.
const TIME_LIMIT: Duration = Duration::from_secs(600);

/// One protocol's workload: its name, how many clients issue how many
/// operations each, and how to build the system.
struct Workload {
    protocol: &'static str,
    clients: u64,
    ops: u64,
    build: fn(clients: u64, ops: u64) -> Simulator,
}

/// Every protocol this binary runs, and its workload's size.
const WORKLOADS: &[Workload] = &[
    Workload {
        protocol: "unreplicated",
        clients: 10,
        ops: 2000,
        build: |clients, ops| {
            protocols::simulate::unreplicated::system(SEED, Network::reliable(), clients, ops).0
        },
    },
    Workload {
        protocol: "pbft",
        clients: 10,
        ops: 200,
        build: |clients, ops| {
            protocols::simulate::pbft::system(SEED, Network::reliable(), 4, clients, ops).sim
        },
    },
];

/// The measured part: the simulation from its first event until the
/// clients are done. Its name is what callgrind's `--toggle-collect`
/// matches, so it must stay a function of its own.
#[inline(never)]
fn instructions_measured_run(sim: &mut Simulator) -> bool {
    sim.run_until_clients_done(Time::ZERO + TIME_LIMIT)
}

fn main() -> ExitCode {
    let names = || {
        WORKLOADS
            .iter()
            .map(|w| w.protocol)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [arg] = args.as_slice() else {
        eprintln!(
            "usage: sim_workload <protocol> | --list (protocols: {})",
            names()
        );
        return ExitCode::from(2);
    };
    if arg == "--list" {
        for w in WORKLOADS {
            println!("{}", w.protocol);
        }
        return ExitCode::SUCCESS;
    }
    let Some(workload) = WORKLOADS.iter().find(|w| w.protocol == arg) else {
        eprintln!("unknown protocol {arg:?}; known: {}", names());
        return ExitCode::from(2);
    };
    let mut sim = (workload.build)(workload.clients, workload.ops);
    let done = instructions_measured_run(&mut sim);
    let completed = sim.ops_completed();
    let expected = workload.clients * workload.ops;
    if !done || completed != expected {
        eprintln!(
            "{}: {completed} of {expected} operations completed by {}",
            workload.protocol,
            sim.now()
        );
        return ExitCode::FAILURE;
    }
    println!(
        "protocol={} clients={} ops_per_client={} operations={completed} deliveries={} \
         simulated_ns={}",
        workload.protocol,
        workload.clients,
        workload.ops,
        sim.deliveries(),
        sim.now().as_nanos()
    );
    ExitCode::SUCCESS
}
