//! Rank discovery from explicit environment maps (the real environment is never touched).

use super::*;

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn err(pairs: &[(&str, &str)]) -> (String, String) {
    let e = discover(&env(pairs)).unwrap_err();
    let Error::Config { key, message } = e else {
        panic!("not a config error: {e:?}");
    };
    (key, message)
}

const TORCHRUN: &[(&str, &str)] = &[
    ("RANK", "3"),
    ("WORLD_SIZE", "4"),
    ("LOCAL_RANK", "1"),
    ("LOCAL_WORLD_SIZE", "2"),
    ("MASTER_ADDR", "10.0.0.1"),
    ("MASTER_PORT", "29400"),
];

#[test]
fn no_launcher_or_one_process_is_a_single_process_run() {
    assert_eq!(discover(&env(&[("PATH", "/bin")])).unwrap(), None);
    let one = [
        ("RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "1234"),
    ];
    assert_eq!(discover(&env(&one)).unwrap(), None);
}

#[test]
fn torchrun_and_weft_launch() {
    let p = discover(&env(TORCHRUN)).unwrap().unwrap();
    assert_eq!(
        p,
        ProcessRank {
            launcher: Launcher::Torchrun,
            rank: 3,
            world: 4,
            local_rank: 1,
            local_world: 2,
            master_addr: "10.0.0.1".into(),
            master_port: 29400,
            token: String::new(),
            launcher_fd: None,
        }
    );
    let mut weft = env(TORCHRUN);
    weft.insert("WEFT_LAUNCH".into(), "1".into());
    weft.insert("WEFT_STORE_TOKEN".into(), "s3cret".into());
    let p = discover(&weft).unwrap().unwrap();
    assert_eq!((p.launcher, p.token.as_str()), (Launcher::Weft, "s3cret"));
}

#[test]
fn partial_or_inconsistent_torchrun_env_names_the_variable() {
    let partial: Vec<_> = TORCHRUN
        .iter()
        .copied()
        .filter(|(k, _)| *k != "MASTER_PORT")
        .collect();
    assert_eq!(
        err(&partial),
        (
            "MASTER_PORT".into(),
            "MASTER_PORT is not set, but other variables of torchrun are: the environment is partial".into()
        )
    );
    assert_eq!(
        err(&[("WORLD_SIZE", "2")]),
        (
            "RANK".into(),
            "RANK is not set, but other variables of torchrun are: the environment is partial"
                .into()
        )
    );
    let mut bad = env(TORCHRUN);
    bad.insert("RANK".into(), "4".into());
    let e = discover(&bad).unwrap_err();
    assert_eq!(e.code(), "WEFT_CONFIG");
    assert_eq!(
        e.to_string(),
        "RANK=4 is not below WORLD_SIZE=4 (set by torchrun)"
    );
    bad.insert("RANK".into(), "x".into());
    assert_eq!(
        discover(&bad).unwrap_err().to_string(),
        "RANK='x' is not a non-negative integer"
    );
    let mut port = env(TORCHRUN);
    port.insert("MASTER_PORT".into(), "70000".into());
    assert_eq!(
        discover(&port).unwrap_err().to_string(),
        "MASTER_PORT='70000' is not a port (1-65535)"
    );
}

#[test]
fn slurm_finds_the_first_node_and_a_job_port() {
    let p = discover(&env(&[
        ("SLURM_PROCID", "5"),
        ("SLURM_NTASKS", "8"),
        ("SLURM_LOCALID", "1"),
        ("SLURM_TASKS_PER_NODE", "2(x4)"),
        ("SLURM_JOB_NODELIST", "gpu[07-10,12],cpu1"),
        ("SLURM_JOB_ID", "123456"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!((p.launcher, p.rank, p.world), (Launcher::Slurm, 5, 8));
    assert_eq!((p.local_rank, p.local_world), (1, 2));
    assert_eq!(
        (p.master_addr.as_str(), p.master_port),
        ("gpu07", 29500 + 456)
    );
    let launch_node = discover(&env(&[
        ("SLURM_PROCID", "0"),
        ("SLURM_NTASKS", "2"),
        ("SLURM_LOCALID", "0"),
        ("SLURM_LAUNCH_NODE_IPADDR", "10.1.2.3"),
        ("MASTER_PORT", "4000"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(
        (launch_node.master_addr.as_str(), launch_node.master_port),
        ("10.1.2.3", 4000)
    );
    assert_eq!(
        err(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2")]).0,
        "SLURM_LOCALID"
    );
    assert_eq!(
        err(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_NODELIST", "[1-2]"),
        ]),
        (
            "SLURM_NODELIST".into(),
            "SLURM_NODELIST='[1-2]' is not a Slurm node list (host, host[01-04,07], ...)".into()
        )
    );
}

#[test]
fn open_mpi_on_one_node_defaults_to_loopback_and_needs_master_addr_across_nodes() {
    let one_node = [
        ("OMPI_COMM_WORLD_RANK", "1"),
        ("OMPI_COMM_WORLD_SIZE", "2"),
        ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
    ];
    let p = discover(&env(&one_node)).unwrap().unwrap();
    assert_eq!(p.launcher, Launcher::OpenMpi);
    assert_eq!(
        (p.master_addr.as_str(), p.master_port),
        ("127.0.0.1", DEFAULT_PORT)
    );
    let mut two_nodes = env(&one_node);
    two_nodes.insert("OMPI_COMM_WORLD_LOCAL_SIZE".into(), "1".into());
    two_nodes.insert("OMPI_COMM_WORLD_LOCAL_RANK".into(), "0".into());
    let e = discover(&two_nodes).unwrap_err();
    let Error::Config { key, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(key, "MASTER_ADDR");
    assert_eq!(
        err(&one_node[..1]).1,
        "OMPI_COMM_WORLD_SIZE is not set, but other variables of Open MPI are: the environment is partial"
    );
    let mut local = env(&one_node);
    local.insert("OMPI_COMM_WORLD_LOCAL_RANK".into(), "2".into());
    assert_eq!(
        discover(&local).unwrap_err().to_string(),
        "OMPI_COMM_WORLD_LOCAL_RANK=2 is not below OMPI_COMM_WORLD_LOCAL_SIZE=2 (set by Open MPI)"
    );
}

#[test]
fn under_torchrun_the_store_takes_the_port_beside_master_port() {
    let mut elastic = env(TORCHRUN);
    elastic.insert("TORCHELASTIC_RUN_ID".into(), "job".into());
    assert_eq!(discover(&elastic).unwrap().unwrap().master_port, 29401);
    elastic.insert("MASTER_PORT".into(), "65535".into());
    assert_eq!(discover(&elastic).unwrap().unwrap().master_port, 65534);
    elastic.insert("WEFT_STORE_PORT".into(), "31000".into());
    assert_eq!(discover(&elastic).unwrap().unwrap().master_port, 31000);
    // weft launch sets torchrun's variables but hosts no store of its own.
    let mut weft = env(TORCHRUN);
    weft.insert("WEFT_LAUNCH".into(), "1".into());
    weft.insert("TORCHELASTIC_RUN_ID".into(), "job".into());
    assert_eq!(discover(&weft).unwrap().unwrap().master_port, 29400);
    weft.insert("WEFT_STORE_PORT".into(), "0".into());
    assert_eq!(
        err_map(&weft),
        (
            "WEFT_STORE_PORT".into(),
            "WEFT_STORE_PORT='0' is not a port (1-65535)".into()
        )
    );
}

#[test]
fn the_launchers_pipe_is_read_only_from_weft_launch() {
    let mut weft = env(TORCHRUN);
    weft.insert("WEFT_LAUNCH".into(), "1".into());
    weft.insert("WEFT_LAUNCHER_FD".into(), "3".into());
    assert_eq!(discover(&weft).unwrap().unwrap().launcher_fd, Some(3));
    let mut torchrun = env(TORCHRUN);
    torchrun.insert("WEFT_LAUNCHER_FD".into(), "3".into());
    assert_eq!(discover(&torchrun).unwrap().unwrap().launcher_fd, None);
}

fn err_map(vars: &Env) -> (String, String) {
    let Error::Config { key, message } = discover(vars).unwrap_err() else {
        panic!("not a config error");
    };
    (key, message)
}
