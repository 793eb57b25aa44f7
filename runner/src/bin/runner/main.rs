//! The runner: drives experiments and simulations from one terminal.
//!
//! It never links protocol code. It builds the `node` binary with cargo and
//! runs it as child processes, configured and reporting over TCP. So changing
//! a protocol does not rebuild the runner, and the runner starts fast.
//!
//! - `runner` (no arguments): the default comparison on this machine: every
//!   protocol against the unreplicated baseline over a small client sweep.
//! - `runner bench`: a custom sweep (protocols, loads, durations, hosts).
//! - `runner tune`: tries replica thread maps and reports the best.
//! - `runner rerun results.json`: a recorded experiment again.
//! - `runner sim`: seeds of a protocol in the simulator, or one seed replayed.
//! - `runner protocols`: the protocols of the registry and their tunables.

mod bench;
mod sim;
mod summary;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    about = "Runs experiments and simulations on distributed protocols.",
    long_about = "Runs experiments and simulations on distributed protocols.\n\n\
                  Without a subcommand: the default comparison of every protocol against the \
                  unreplicated baseline on this machine (about a minute), with a table in the \
                  terminal and CSV, JSON and a plot under results/."
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    default: bench::DefaultArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a sweep of protocols and loads, and save its results and plot.
    Bench(bench::BenchArgs),
    /// Try replica thread maps for a protocol and report the best.
    Tune(bench::TuneArgs),
    /// Run the experiment a results.json records again.
    Rerun(bench::RerunArgs),
    /// Simulate a protocol over many seeds, or replay one seed.
    Sim(sim::SimArgs),
    /// List the protocols, their replica rules and their tunables (what
    /// `--set PROTOCOL.TUNABLE=VALUE` takes, with defaults and bounds).
    Protocols,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => bench::run_default(&cli.default),
        Some(Command::Bench(args)) => bench::run(&args),
        Some(Command::Tune(args)) => bench::tune(&args),
        Some(Command::Rerun(args)) => bench::rerun(&args),
        Some(Command::Sim(args)) => sim::run(&args),
        Some(Command::Protocols) => {
            print!("{}", bench::protocols_text());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
