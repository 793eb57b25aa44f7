//! One fixed simulator workload per protocol, for counting instructions.
//!
//! Runs the protocol's fixed system from the registry
//! ([`protocols::registry::Kit::fixed_system`]: fault-free, deterministic,
//! reliable network, fixed seed, simulated keys, the default key-value
//! workload, closed-loop clients) for the protocol named on the command line
//! until every client is done, and
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

use protocols::registry::{ALL, Protocol};
use runtime::Time;
use runtime::sim::Simulator;

/// Virtual time a run may take at most; a fault-free run needs far less.
const TIME_LIMIT: Duration = Duration::from_secs(600);

/// Closed-loop clients in every protocol's workload.
const CLIENTS: u64 = 10;

/// Operations each client issues.
const OPS: u64 = 500;

/// The measured part: the simulation from its first event until the
/// clients are done. Its name is what callgrind's `--toggle-collect`
/// matches, so it must stay a function of its own.
#[inline(never)]
fn instructions_measured_run(sim: &mut Simulator) -> bool {
    sim.run_until_clients_done(Time::ZERO + TIME_LIMIT)
}

fn main() -> ExitCode {
    let names = wire::registry::names;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [arg] = args.as_slice() else {
        eprintln!(
            "usage: sim_workload <protocol> | --list (protocols: {})",
            names()
        );
        return ExitCode::from(2);
    };
    if arg == "--list" {
        for protocol in ALL {
            println!("{protocol}");
        }
        return ExitCode::SUCCESS;
    }
    let Some(protocol) = Protocol::find(arg) else {
        eprintln!("unknown protocol {arg:?}; known: {}", names());
        return ExitCode::from(2);
    };
    let (mut sim, _log) = protocol.kit().fixed_system(CLIENTS, OPS);
    let done = instructions_measured_run(&mut sim);
    let completed = sim.ops_completed();
    let expected = CLIENTS * OPS;
    if !done || completed != expected {
        eprintln!(
            "{protocol}: {completed} of {expected} operations completed by {}",
            sim.now()
        );
        return ExitCode::FAILURE;
    }
    println!(
        "protocol={protocol} clients={CLIENTS} ops_per_client={OPS} operations={completed} \
         deliveries={} simulated_ns={}",
        sim.deliveries(),
        sim.now().as_nanos()
    );
    ExitCode::SUCCESS
}
