//! Fabric's scenarios (RUNBOOK-MAP.md §B): built-in and custom scenarios, a simulated node
//! fleet on a virtual clock driving the real store and routing policy, the owner console,
//! checkpoints, the live scoreboard and the JSON report.

pub mod checkpoint;
mod error;
pub mod fleet;
pub mod gen;
pub mod owner;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod scoreboard;

pub use checkpoint::{load_checkpoint, save_checkpoint, Checkpoint};
pub use error::SimError;
pub use report::Report;
pub use runner::{Fabric, OwnerConsole, RunOptions, Stop};
pub use scenario::Scenario;
