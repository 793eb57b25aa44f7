//! The node binary.
//!
//! One binary for every role a process plays in this framework:
//!
//! - `sim`: run seeds of a protocol in the deterministic simulator, either one
//!   seed with a human-readable report, or a batch with one JSON line per seed
//!   for the runner.
//! - `serve`: listen on a TCP control port and run whatever the runner asks
//!   for there (a replica, or a set of benchmark clients) on the real runtime,
//!   reporting back on the same connection.
//! - `check-history`: check a key-value history a run recorded for
//!   linearizability (the runner runs it on every history it saves).

mod check_history;
mod panics;
mod serve;
mod sim;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "node", about = "Runs protocol nodes and simulations.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a protocol under faults drawn from seeds, and check it.
    Sim(sim::SimArgs),
    /// Run one replica or set of clients, configured over a TCP control
    /// connection (see `wire::control`).
    Serve(serve::ServeArgs),
    /// Check a recorded key-value history (JSON) for linearizability.
    CheckHistory(check_history::CheckHistoryArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::CheckHistory(args) => match check_history::run(&args) {
            Ok(code) => Ok(code),
            // Unreadable: 2, apart from 1 (not linearizable).
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
