//! The `fabric` binary: parses the command line, sets up logging, runs the command and maps
//! its outcome to an exit code (0 ok, 1 failed, 2 bad usage or invalid input).

mod cli;
mod commands;
mod context;
mod logging;
mod output;

use clap::Parser;

/// mimalloc instead of the system allocator: a scenario run allocates some 30 times per job,
/// and this makes a 1,000,000-job run 5 – 7 % faster (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Everything Fabric creates is private to its owner (0700 dirs, 0600 files).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = cli::Cli::parse();
    logging::init();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(context::exit_code(&e))
        }
    }
}
