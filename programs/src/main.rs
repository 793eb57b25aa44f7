//! The node binary.
//!
//! One binary for every role a process plays in this framework. Today that is
//! `sim`: run seeds of a protocol in the deterministic simulator, either one
//! seed with a human-readable report, or a batch with one JSON line per seed
//! for the runner. Replica and bench-client roles, configured over a TCP
//! control port, join as further subcommands.

mod sim;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
