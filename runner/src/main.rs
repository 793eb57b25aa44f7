//! The runner: drives experiments and simulations from one terminal.
//!
//! It never links protocol code. It builds the `node` binary with cargo and
//! runs it as child processes, reading their results as the `wire` types they
//! print. So changing a protocol does not rebuild the runner, and the runner
//! starts fast.
//!
//! Subcommands:
//! - `sim`: run seeds of a protocol in the simulator, spread over one worker
//!   process per core, with a progress bar and a summary; or replay one seed.

mod sim;
mod summary;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    about = "Runs simulations and experiments on distributed protocols."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a protocol over many seeds, or replay one seed.
    Sim(sim::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Sim(args)) => sim::run(&args),
        // The default job (a comparison of every protocol against the
        // unreplicated baseline) comes with the real runtime; until then, say
        // what there is.
        None => Cli::command()
            .print_help()
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
