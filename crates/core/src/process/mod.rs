//! Several processes training one model: who this process is and how the processes meet.
//!
//! - `env`: rank discovery from the launcher's environment (`weft launch`, torchrun, Slurm,
//!   Open MPI), typed errors naming the variable.
//! - `world`: `ProcessWorld`, joining the job through the TCP store and making TCP groups.

mod env;
mod world;

pub use env::{DEFAULT_PORT, Launcher, ProcessRank, discover, process_env};
pub use world::ProcessWorld;
