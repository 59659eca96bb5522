//! A save killed at any instant leaves a loadable checkpoint (issue 15, item 1). A child process
//! trains and saves in a loop; the parent SIGKILLs it at random instants and after each kill
//! checks that the root loads, that the loaded state continues exactly as an uninterrupted run
//! (so no file of one save was mixed with another's), and that the next save leaves no temp
//! entry behind. `WEFT_KILL_CASES` sets the number of kills (default 30, kept under a minute on
//! two cores); the counts are printed.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weft_core::checkpoint::steps;

const IN: usize = 256;
const HIDDEN: usize = 1024;
const CLASSES: usize = 16;
const ROWS: usize = 8;
const KEEP: usize = 2;
/// A child saves at most this long, should the parent die before killing it.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// Large enough (a few MB of parameters and Adam state) that a save takes a while, so many
/// kills land inside one.
fn model() -> Graph {
    let mut b = GraphBuilder::new();
    let x = b
        .input("x", Shape(vec![Dim::Batch(1), Dim::Fixed(IN)]), DType::F32)
        .unwrap();
    let y = b
        .input("y", Shape(vec![Dim::Batch(1)]), DType::I32)
        .unwrap();
    let h = linear(&mut b, x, "fc1", IN, HIDDEN);
    let h = op(&mut b, Op::Unary(UnaryOp::Relu), &[h]);
    let logits = linear(&mut b, h, "fc2", HIDDEN, CLASSES);
    let loss = mean_cross_entropy(&mut b, logits, y);
    b.finish(loss).unwrap()
}

fn trainer() -> Trainer {
    let opts = serde_json::json!({
        "batch": ROWS, "seed": 5, "devices": "cpu:1", "threads": 1,
        "optimizer": {"kind": "adamw", "lr": 1e-3},
    });
    Trainer::compile(model(), TrainerOptions::from_json(&opts).unwrap()).unwrap()
}

/// The batch of step `step` (0-based): a pure function of it, so every restart sees the same.
fn batch_of(step: u64) -> BTreeMap<String, HostData> {
    let x = (0..ROWS * IN)
        .map(|i| rng::uniform(9, step, i as u64) * 2.0 - 1.0)
        .collect();
    let y = (0..ROWS)
        .map(|i| (rng::uniform(10, step, i as u64) * CLASSES as f32) as i32 % CLASSES as i32)
        .collect();
    BTreeMap::from([
        ("x".to_string(), HostData::F32(x)),
        ("y".to_string(), HostData::I32(y)),
    ])
}

/// One step of `t` on its own next batch; returns the loss.
fn step(t: &mut Trainer) -> f32 {
    let s = t.step_count();
    t.step(&batch_of(s)).unwrap().loss
}

/// The child: resume from `root` if anything is saved there, then step and save until killed.
fn saver(root: &Path) {
    let mut t = trainer();
    if steps::resolve(root).is_ok() {
        t.load(root).unwrap();
    }
    let start = Instant::now();
    while start.elapsed() < CHILD_LIFETIME {
        step(&mut t);
        t.save_keeping(root, serde_json::Value::Null, KEEP).unwrap();
    }
}

fn spawn(root: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_save_killed_at_any_instant_leaves_a_loadable_checkpoint",
        ])
        .env("WEFT_TEST_CHILD", root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Temp entries in `root`: the staging directories of step saves (`.weft-tmp-*`), or the
/// `*.tmp-<pid>` files of a save written file by file.
fn temp_entries(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().contains("tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Losses of the uninterrupted run, extended on demand.
struct Reference {
    trainer: Trainer,
    losses: Vec<f32>,
}

impl Reference {
    fn loss(&mut self, step: u64) -> f32 {
        while self.losses.len() <= step as usize {
            let l = self::step(&mut self.trainer);
            self.losses.push(l);
        }
        self.losses[step as usize]
    }
}

#[test]
fn a_save_killed_at_any_instant_leaves_a_loadable_checkpoint() {
    if let Some(root) = std::env::var_os("WEFT_TEST_CHILD") {
        return saver(Path::new(&root));
    }
    let kills: u64 = std::env::var("WEFT_KILL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let root = std::env::temp_dir().join(format!("weft-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut reference = Reference {
        trainer: trainer(),
        losses: Vec::new(),
    };
    let (mut mid_save, mut torn, mut leftover, mut resumed) = (0, 0, 0, 0);
    for kill in 0..kills {
        let mut child = spawn(&root);
        // Uniform over the child's start-up and several save cycles.
        let wait = rng::uniform(77, kill, 0) * 600.0;
        std::thread::sleep(Duration::from_micros((wait * 1000.0) as u64));
        child.kill().unwrap();
        child.wait().unwrap();
        mid_save += usize::from(!temp_entries(&root).is_empty());
        if steps::resolve(&root).is_err() {
            continue; // killed before its first save completed: nothing to load yet
        }
        // Resume: the loaded state must continue exactly as the uninterrupted run.
        let mut t = trainer();
        if t.load(&root).is_err() {
            torn += 1;
            continue;
        }
        let at = t.step_count();
        let (a, b) = (step(&mut t), step(&mut t));
        if (a, b) != (reference.loss(at), reference.loss(at + 1)) {
            torn += 1;
            continue;
        }
        resumed += 1;
        // The next save removes the dead child's temp entries.
        t.save_keeping(&root, serde_json::Value::Null, KEEP)
            .unwrap();
        leftover += temp_entries(&root).len();
    }
    println!(
        "kill-during-save: {kills} kills, {mid_save} inside a save (temp entries left), \
         {resumed} resumed exactly, {torn} torn, {leftover} temp entries left after the next save"
    );
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!((torn, leftover), (0, 0));
    assert!(resumed > kills / 2, "too few kills came after a first save");
}
