//! Rank discovery: which process of a multi-process job this one is, from the environment its
//! launcher set. `weft launch` and torchrun set the same variables; Slurm (`srun`) and Open MPI
//! (`mpirun`) have their own. The parsing takes an explicit map, so tests never touch the real
//! environment; a partial or inconsistent environment is a `WEFT_CONFIG` error naming the
//! variable.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Who started the processes (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// `weft launch` (torchrun's variables plus `WEFT_LAUNCH`).
    Weft,
    Torchrun,
    Slurm,
    OpenMpi,
}

impl Launcher {
    pub fn name(self) -> &'static str {
        match self {
            Launcher::Weft => "weft launch",
            Launcher::Torchrun => "torchrun",
            Launcher::Slurm => "Slurm",
            Launcher::OpenMpi => "Open MPI",
        }
    }
}

/// This process's place in a job of several processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRank {
    pub launcher: Launcher,
    /// Global process rank, `0..world`.
    pub rank: usize,
    /// Number of processes in the job.
    pub world: usize,
    /// Rank among the processes of this node.
    pub local_rank: usize,
    pub local_world: usize,
    /// Where rank 0 hosts the store: a host name or address, and a port (`WEFT_STORE_PORT`, else
    /// `MASTER_PORT`, or the port beside it under torchrun).
    pub master_addr: String,
    pub master_port: u16,
    /// The shared secret every connection presents (`WEFT_STORE_TOKEN`; empty when unset).
    pub token: String,
    /// `weft launch`'s pipe (`WEFT_LAUNCHER_FD`): this process exits when it closes.
    pub launcher_fd: Option<i32>,
}

/// torchrun's default port, also used when Open MPI's ranks all run on one node without
/// `MASTER_PORT`.
pub const DEFAULT_PORT: u16 = 29500;

type Env = BTreeMap<String, String>;

/// The job this process belongs to, or None when it runs alone (no launcher variables, or a
/// world of one process).
pub fn discover(env: &Env) -> Result<Option<ProcessRank>> {
    let found = if env.contains_key("RANK") || env.contains_key("WORLD_SIZE") {
        Some(torchrun(env)?)
    } else if env.contains_key("SLURM_PROCID") {
        Some(slurm(env)?)
    } else if env.contains_key("OMPI_COMM_WORLD_RANK") {
        Some(open_mpi(env)?)
    } else {
        None
    };
    Ok(found.filter(|p| p.world > 1))
}

/// The real environment, for `discover`.
pub fn process_env() -> Env {
    std::env::vars().collect()
}

fn torchrun(env: &Env) -> Result<ProcessRank> {
    let launcher = if env.contains_key("WEFT_LAUNCH") {
        Launcher::Weft
    } else {
        Launcher::Torchrun
    };
    let rank = required_uint(env, "RANK", launcher)?;
    let world = required_uint(env, "WORLD_SIZE", launcher)?;
    let local_rank = optional_uint(env, "LOCAL_RANK")?.unwrap_or(rank);
    let local_world = optional_uint(env, "LOCAL_WORLD_SIZE")?.unwrap_or(world);
    let master_addr = required(env, "MASTER_ADDR", launcher)?.to_string();
    let master_port = port(env, "MASTER_PORT", launcher)?;
    // torchrun's own store may hold MASTER_PORT on rank 0's node: weft takes the next one.
    let master_port = match under_torchelastic(env) && launcher == Launcher::Torchrun {
        true => beside(master_port),
        false => master_port,
    };
    finish(
        env,
        launcher,
        [rank, world, local_rank, local_world],
        master_addr,
        master_port,
    )
}

fn slurm(env: &Env) -> Result<ProcessRank> {
    let l = Launcher::Slurm;
    let rank = required_uint(env, "SLURM_PROCID", l)?;
    let world = required_uint(env, "SLURM_NTASKS", l)?;
    let local_rank = required_uint(env, "SLURM_LOCALID", l)?;
    let local_world = match env.get("SLURM_NTASKS_PER_NODE") {
        Some(_) => required_uint(env, "SLURM_NTASKS_PER_NODE", l)?,
        None => slurm_tasks_on_first_node(env)?.unwrap_or(world),
    };
    // MASTER_ADDR wins; else the first node of the allocation, else the launch node.
    let master_addr = match env.get("MASTER_ADDR") {
        Some(a) => a.clone(),
        None => match ["SLURM_JOB_NODELIST", "SLURM_NODELIST"]
            .iter()
            .find_map(|k| env.get(*k).map(|v| (*k, v)))
        {
            Some((key, list)) => first_node(key, list)?,
            None => required(env, "SLURM_LAUNCH_NODE_IPADDR", l)?.to_string(),
        },
    };
    // A port derived from the job id keeps two jobs on one node apart; MASTER_PORT overrides.
    let master_port = match env.get("MASTER_PORT") {
        Some(_) => port(env, "MASTER_PORT", l)?,
        None => match optional_uint(env, "SLURM_JOB_ID")? {
            Some(id) => DEFAULT_PORT + (id % 1000) as u16,
            None => DEFAULT_PORT,
        },
    };
    finish(
        env,
        l,
        [rank, world, local_rank, local_world],
        master_addr,
        master_port,
    )
}

fn open_mpi(env: &Env) -> Result<ProcessRank> {
    let l = Launcher::OpenMpi;
    let rank = required_uint(env, "OMPI_COMM_WORLD_RANK", l)?;
    let world = required_uint(env, "OMPI_COMM_WORLD_SIZE", l)?;
    let local_rank = required_uint(env, "OMPI_COMM_WORLD_LOCAL_RANK", l)?;
    let local_world = required_uint(env, "OMPI_COMM_WORLD_LOCAL_SIZE", l)?;
    // mpirun does not say where rank 0 runs; on one node it is this host.
    let one_node = local_world == world;
    let master_addr = match env.get("MASTER_ADDR") {
        Some(a) => a.clone(),
        None if one_node => "127.0.0.1".into(),
        None => {
            return Err(Error::config(
                "MASTER_ADDR",
                "MASTER_ADDR is not set: Open MPI does not tell the ranks of a job spanning \
                 several nodes where rank 0 runs; pass it (mpirun -x MASTER_ADDR=<rank 0's host> \
                 -x MASTER_PORT=<free port>)",
            ));
        }
    };
    let master_port = match env.get("MASTER_PORT") {
        Some(_) => port(env, "MASTER_PORT", l)?,
        None => DEFAULT_PORT,
    };
    finish(
        env,
        l,
        [rank, world, local_rank, local_world],
        master_addr,
        master_port,
    )
}

/// Whether torchrun's elastic agent started this process (its `TORCHELASTIC_*` variables): its
/// store then holds `MASTER_PORT`.
fn under_torchelastic(env: &Env) -> bool {
    env.keys().any(|k| k.starts_with("TORCHELASTIC_"))
}

/// The store's port under torchrun when `WEFT_STORE_PORT` is not given: `MASTER_PORT + 1`
/// (`MASTER_PORT - 1` for 65535).
fn beside(master_port: u16) -> u16 {
    master_port.checked_add(1).unwrap_or(master_port - 1)
}

/// Check the numbers against each other and add the token; `WEFT_STORE_PORT` overrides the
/// store's port under any launcher.
fn finish(
    env: &Env,
    launcher: Launcher,
    [rank, world, local_rank, local_world]: [usize; 4],
    master_addr: String,
    master_port: u16,
) -> Result<ProcessRank> {
    let names = match launcher {
        Launcher::Weft | Launcher::Torchrun => {
            ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"]
        }
        Launcher::Slurm => [
            "SLURM_PROCID",
            "SLURM_NTASKS",
            "SLURM_LOCALID",
            "SLURM_NTASKS_PER_NODE",
        ],
        Launcher::OpenMpi => [
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "OMPI_COMM_WORLD_LOCAL_SIZE",
        ],
    };
    let below = |(a, x): (usize, usize), (b, y): (usize, usize)| -> Result<()> {
        if x < y {
            return Ok(());
        }
        Err(Error::config(
            names[a],
            format!(
                "{}={x} is not below {}={y} (set by {})",
                names[a],
                names[b],
                launcher.name()
            ),
        ))
    };
    below((0, rank), (1, world))?;
    below((2, local_rank), (3, local_world))?;
    if local_world > world {
        return Err(Error::config(
            names[3],
            format!(
                "{}={local_world} is more than {}={world}",
                names[3], names[1]
            ),
        ));
    }
    if master_addr.is_empty() {
        return Err(Error::config("MASTER_ADDR", "MASTER_ADDR is empty"));
    }
    let master_port = match env.get("WEFT_STORE_PORT") {
        Some(_) => port(env, "WEFT_STORE_PORT", launcher)?,
        None => master_port,
    };
    let token = env.get("WEFT_STORE_TOKEN").cloned().unwrap_or_default();
    let launcher_fd = match launcher {
        Launcher::Weft => optional_uint(env, "WEFT_LAUNCHER_FD")?
            .map(|fd| {
                i32::try_from(fd).map_err(|_| {
                    Error::config(
                        "WEFT_LAUNCHER_FD",
                        format!("WEFT_LAUNCHER_FD={fd} is not a file descriptor"),
                    )
                })
            })
            .transpose()?,
        _ => None,
    };
    Ok(ProcessRank {
        launcher,
        rank,
        world,
        local_rank,
        local_world,
        master_addr,
        master_port,
        token,
        launcher_fd,
    })
}

fn required<'a>(env: &'a Env, key: &str, launcher: Launcher) -> Result<&'a str> {
    env.get(key).map(String::as_str).ok_or_else(|| {
        Error::config(
            key,
            format!(
                "{key} is not set, but other variables of {} are: the environment is partial",
                launcher.name()
            ),
        )
    })
}

fn parse_uint(key: &str, value: &str) -> Result<usize> {
    value.trim().parse().map_err(|_| {
        Error::config(
            key,
            format!("{key}='{value}' is not a non-negative integer"),
        )
    })
}

fn required_uint(env: &Env, key: &str, launcher: Launcher) -> Result<usize> {
    parse_uint(key, required(env, key, launcher)?)
}

fn optional_uint(env: &Env, key: &str) -> Result<Option<usize>> {
    env.get(key).map(|v| parse_uint(key, v)).transpose()
}

fn port(env: &Env, key: &str, launcher: Launcher) -> Result<u16> {
    let value = required(env, key, launcher)?;
    match value.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(Error::config(
            key,
            format!("{key}='{value}' is not a port (1-65535)"),
        )),
    }
}

/// `SLURM_TASKS_PER_NODE` such as `2(x3),1`: the count on the first node.
fn slurm_tasks_on_first_node(env: &Env) -> Result<Option<usize>> {
    let Some(text) = env.get("SLURM_TASKS_PER_NODE") else {
        return Ok(None);
    };
    let first = text.split(',').next().unwrap_or("");
    let count = first.split('(').next().unwrap_or("");
    parse_uint("SLURM_TASKS_PER_NODE", count).map(Some)
}

/// The first host of a Slurm node list: `node[07-09,12],gpu1` -> `node07`.
fn first_node(key: &str, list: &str) -> Result<String> {
    let bad = || {
        Error::config(
            key,
            format!("{key}='{list}' is not a Slurm node list (host, host[01-04,07], ...)"),
        )
    };
    let (head, rest) = match list.find(['[', ',']) {
        Some(i) => list.split_at(i),
        None => (list, ""),
    };
    if head.is_empty() {
        return Err(bad());
    }
    let Some(inner) = rest.strip_prefix('[') else {
        return Ok(head.to_string());
    };
    let range = inner.split([',', ']']).next().ok_or_else(bad)?;
    let start = range.split('-').next().unwrap_or("");
    if start.is_empty() || !start.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    Ok(format!("{head}{start}"))
}

#[cfg(test)]
mod tests;
