//! Golden slicings: each case reproduces one of EPL's cluster / strategy tests and is compared
//! with `tests/fixtures/slicing/<case>.txt` (input description, rendered slicing, JSON). Run
//! with `WEFT_BLESS=1` to rewrite the fixtures after an intended change.

use super::{replicate, split};
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::ir::TaskGraph;
use crate::strategy::{
    Cluster, DeviceKind, GlobalDevice, Host, Layout, Slicing, slice, strategy_name,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// One golden case: a cluster, the model's TaskGraphs and the layout as EPL's JSON argument
/// (or `colocate`: `cluster.colocate_split_and_replicate=true`).
struct Case {
    name: &'static str,
    source: &'static str,
    cluster: Cluster,
    taskgraphs: Vec<TaskGraph>,
    layout: Value,
    colocate: bool,
    prefer_intra_node: bool,
}

fn hosts(names: &[&str], per_host: usize) -> Cluster {
    let hosts = names.iter().map(|n| Host::new(*n, per_host)).collect();
    Cluster::new(DeviceKind::Cuda, hosts).unwrap()
}

fn gpus(hosts: usize, per_host: usize) -> Cluster {
    Cluster::uniform(DeviceKind::Cuda, hosts, per_host).unwrap()
}

fn case(name: &'static str, source: &'static str, cluster: Cluster, tgs: Vec<TaskGraph>) -> Case {
    Case {
        name,
        source,
        cluster,
        taskgraphs: tgs,
        layout: json!("auto"),
        colocate: false,
        prefer_intra_node: true,
    }
}

impl Case {
    fn layout(self, layout: Value) -> Case {
        Case { layout, ..self }
    }

    fn colocated(self) -> Case {
        Case {
            colocate: true,
            ..self
        }
    }

    fn prefer_intra_node(self, prefer_intra_node: bool) -> Case {
        Case {
            prefer_intra_node,
            ..self
        }
    }

    fn run(&self) -> Result<Slicing> {
        let layout = if self.colocate {
            let config = ClusterConfig {
                colocate_split_and_replicate: true,
                ..ClusterConfig::default()
            };
            Layout::from_config(&config, &self.cluster)?
        } else {
            Layout::from_json(&self.layout, &self.cluster)?
        };
        slice(
            &self.cluster,
            &self.taskgraphs,
            &layout,
            self.prefer_intra_node,
        )
    }

    fn render(&self) -> String {
        let names: Vec<&str> = self
            .cluster
            .hosts()
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        let tgs: Vec<String> = self
            .taskgraphs
            .iter()
            .map(|tg| {
                format!(
                    "'{}' {}({})",
                    tg.name,
                    strategy_name(tg.strategy),
                    tg.device_count
                )
            })
            .collect();
        let layout = if self.colocate {
            "cluster.colocate_split_and_replicate=true".to_string()
        } else {
            self.layout.to_string()
        };
        let mut text = format!(
            "# {}\ncluster: {} ({})\ntaskgraphs: {}\nlayout: {layout}\n\
             cluster.device_place_prefer_intra_node: {}\n---\n",
            self.source,
            self.cluster,
            names.join(" "),
            tgs.join(", "),
            self.prefer_intra_node
        );
        match self.run() {
            Ok(slicing) => {
                text += &slicing.to_string();
                text += &format!("json: {}\n", slicing.to_json());
            }
            Err(e) => text += &format!("error {} [{}]: {e}\n", e.code(), error_key(&e)),
        }
        text
    }
}

fn error_key(e: &Error) -> &str {
    match e {
        Error::Config { key, .. } => key,
        _ => "",
    }
}

const EPL_HOSTS: [&str; 2] = ["127.0.0.1:8000", "127.0.0.1:8001"];
const AWARE_HOSTS: [&str; 4] = [
    "192.34.5.1:8000",
    "192.34.5.2:8001",
    "192.34.5.1:8002",
    "192.34.5.2:8003",
];

fn stages(n: usize, device_count: usize) -> Vec<TaskGraph> {
    (0..n)
        .map(|s| replicate(&format!("stage_{s}"), device_count))
        .collect()
}

fn cases() -> Vec<Case> {
    let mut cases = auto_cases();
    cases.extend(cluster_cases());
    cases
}

/// Layout `auto` (EPL's default unless colocating) and its two enumeration orders.
fn auto_cases() -> Vec<Case> {
    vec![
        case(
            "strategy_new_pipeline_with_dp",
            "EPL strategy_new_test.py::test_pipeline_with_dp",
            gpus(1, 4),
            stages(2, 1),
        ),
        case(
            "strategy_new_pipeline_4_stages",
            "EPL strategy_new_test.py::test_pipeline",
            gpus(1, 4),
            stages(4, 1),
        ),
        case(
            "strategy_new_dp",
            "EPL strategy_new_test.py::test_dp",
            gpus(1, 4),
            vec![replicate("Replicate", 1)],
        ),
        case(
            "auto_cluster_model_parallel",
            "EPL auto_cluster_test.py::test_model_parallelism",
            gpus(1, 4),
            stages(2, 1),
        ),
        case(
            "auto_indivisible",
            "EPL cluster.py AutoLayout (indivisible raises)",
            gpus(1, 4),
            vec![replicate("stage_0", 1), replicate("stage_1", 2)],
        ),
        case(
            "auto_more_stages_than_devices",
            "weft: more stages than devices (EPL: its indivisible error)",
            gpus(1, 2),
            stages(3, 1),
        ),
        case(
            "prefer_intra_node_true",
            "EPL cluster.py get_device_list(prefer_row=True)",
            gpus(2, 4),
            stages(2, 2),
        ),
        case(
            "prefer_intra_node_false",
            "EPL cluster.py get_device_list(prefer_row=False)",
            gpus(2, 4),
            stages(2, 2),
        )
        .prefer_intra_node(false),
        case(
            "local_cpu_pipeline_dp",
            "weft --devices cpu:8, two 1-device stages",
            Cluster::local(8).unwrap(),
            stages(2, 1),
        ),
    ]
}

/// EPL's cluster tests: layouts `all` (and colocation), `specific`, `aware_row`, unknown.
fn cluster_cases() -> Vec<Case> {
    let specific = json!({"specific": [
        [["127.0.0.1:8000/cuda:0"], ["127.0.0.1:8001/cuda:0"],
         ["127.0.0.1:8000/cuda:1"], ["127.0.0.1:8001/cuda:1"]],
        [["127.0.0.1:8000/cuda:2"], ["127.0.0.1:8001/cuda:2"],
         ["127.0.0.1:8000/cuda:3"], ["127.0.0.1:8001/cuda:3"]],
    ]});
    vec![
        case(
            "cluster_all",
            "EPL cluster_test.py::test_cluster_with_all",
            hosts(&EPL_HOSTS, 4),
            vec![replicate("replica", 1)],
        )
        .layout(json!("all")),
        case(
            "cluster_all_colocate",
            "EPL set_default_scope_test.py / MoE (colocate => all)",
            hosts(&EPL_HOSTS, 4),
            vec![replicate("backbone", 8), split("head", 8)],
        )
        .colocated(),
        case(
            "cluster_specific",
            "EPL cluster_test.py::test_cluster_with_specific",
            hosts(&EPL_HOSTS, 4),
            stages(2, 1),
        )
        .layout(specific),
        case(
            "cluster_unknown_layout",
            "EPL cluster_test.py::test_unkown_slice_layout",
            hosts(&EPL_HOSTS, 4),
            stages(1, 1),
        )
        .layout(json!({"unkown_layout": 2})),
        case(
            "aware_row_two_machines",
            "EPL cluster_test_with_aware.py (2 workers)",
            hosts(&AWARE_HOSTS[..2], 1),
            stages(2, 1),
        )
        .layout(json!({"aware_row": 1})),
        case(
            "aware_row_reorder",
            "EPL cluster_test_with_aware.py (4 workers)",
            hosts(&AWARE_HOSTS, 1),
            stages(2, 1),
        )
        .layout(json!({"aware_row": 2})),
        case(
            "aware_row_indivisible",
            "EPL cluster_test_with_aware.py (un-divisible)",
            hosts(&EPL_HOSTS, 1),
            stages(1, 1),
        )
        .layout(json!({"aware_row": 3})),
    ]
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/slicing")
}

#[test]
fn golden_slicings() {
    let bless = std::env::var("WEFT_BLESS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for case in cases() {
        let path = fixture_dir().join(format!("{}.txt", case.name));
        let actual = case.render();
        if bless {
            std::fs::create_dir_all(fixture_dir()).unwrap();
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}: differs from {}\n--- expected\n{expected}--- actual\n{actual}",
                case.name,
                path.display()
            )),
            Err(e) => failures.push(format!("{}: {} ({e})", case.name, path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(rerun with WEFT_BLESS=1 to rewrite the fixtures)",
        failures.join("\n")
    );
}

#[test]
fn every_fixture_has_a_case() {
    let names: Vec<String> = cases().iter().map(|c| format!("{}.txt", c.name)).collect();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            names.contains(&file),
            "stale fixture {file}: no golden case has that name"
        );
    }
}

/// The facts EPL's tests assert beyond the slices themselves.
#[test]
fn epl_side_facts() {
    let by_name = |name: &str| cases().into_iter().find(|c| c.name == name).unwrap();
    // cluster_test_with_aware.py: worker 1 (192.34.5.2:8001) becomes worker 2.
    let aware = by_name("aware_row_reorder").run().unwrap();
    assert_eq!(aware.host_position(1), Some(2));
    assert_eq!(aware.num_replicas, 2);
    // cluster_test.py::test_cluster_with_specific: worker 1's local devices per VirtualDevice.
    let specific = by_name("cluster_specific").run().unwrap();
    let names = |tg: usize| -> Vec<String> {
        let local = specific.local_devices(tg, 1);
        local
            .iter()
            .map(|&d| specific.cluster.device_name(d))
            .collect()
    };
    assert_eq!(names(0), ["127.0.0.1:8001/cuda:0", "127.0.0.1:8001/cuda:1"]);
    assert_eq!(names(1), ["127.0.0.1:8001/cuda:2", "127.0.0.1:8001/cuda:3"]);
    // strategy_new_test.py: local_num_replicas per TaskGraph.
    let pipeline = by_name("strategy_new_pipeline_with_dp").run().unwrap();
    assert_eq!(
        pipeline.taskgraphs[1].all_devices(),
        [GlobalDevice(1), GlobalDevice(3)]
    );
    assert_eq!(pipeline.taskgraphs[1].device(1, 0), GlobalDevice(3));
    let dp = by_name("strategy_new_dp").run().unwrap();
    assert_eq!((dp.num_replicas, dp.taskgraphs[0].num_replicas()), (4, 4));
}
