//! Several processes training one model: who this process is and how the processes meet.
//!
//! - `env`: rank discovery from the launcher's environment (`weft launch`, torchrun, Slurm,
//!   Open MPI), typed errors naming the variable.
//! - `world`: `ProcessWorld`, joining the job through the TCP store (refusing an unauthenticated
//!   store off loopback) and making TCP groups.
//! - `orphan`: a rank started by `weft launch` exits when its launcher does.

mod env;
mod orphan;
mod world;

pub use env::{DEFAULT_PORT, Launcher, ProcessRank, discover, process_env};
pub use world::ProcessWorld;
