//! Golden grids: each case renders to crates/core/tests/fixtures/schedules/<name>.txt.
//! `WEFT_BLESS=1 cargo test -p weft-core --lib schedule` rewrites them (then review the diff).

use super::super::{
    Costs, Schedule, gpipe, interleaved, lower, one_f_one_b, one_f_one_b_extra_warmup, render_grid,
    simulate, validate,
};
use crate::Result;
use std::path::PathBuf;

const BLESS: &str = "WEFT_BLESS";

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schedules")
}

/// (fixture name, title, compute-only schedule). A new case is a new file.
fn cases() -> Result<Vec<(&'static str, &'static str, Schedule)>> {
    Ok(vec![
        (
            "gpipe_s2_m4",
            "gpipe(S=2, M=4) = EPL PreferForward",
            gpipe(2, 4)?,
        ),
        (
            "gpipe_s4_m8",
            "gpipe(S=4, M=8) = EPL PreferForward",
            gpipe(4, 8)?,
        ),
        (
            "one_f_one_b_s2_m4",
            "one_f_one_b(S=2, M=4) = EPL PreferBackward",
            one_f_one_b(2, 4)?,
        ),
        (
            "one_f_one_b_s4_m8",
            "one_f_one_b(S=4, M=8) = EPL PreferBackward",
            one_f_one_b(4, 8)?,
        ),
        (
            "one_f_one_b_extra_warmup_s2_m4",
            "one_f_one_b_extra_warmup(S=2, M=4) = EPL PreferBackwardOptimizer",
            one_f_one_b_extra_warmup(2, 4)?,
        ),
        (
            "one_f_one_b_extra_warmup_s4_m6",
            "one_f_one_b_extra_warmup(S=4, M=6) = EPL PreferBackwardOptimizer (scheduler_test)",
            one_f_one_b_extra_warmup(4, 6)?,
        ),
        (
            "interleaved_s2_v2_m4",
            "interleaved(ranks=2, V=2, M=4) = Megatron-LM interleaved 1F1B",
            interleaved(2, 2, 4)?,
        ),
        (
            "interleaved_s4_v2_m8",
            "interleaved(ranks=4, V=2, M=8) = Megatron-LM interleaved 1F1B",
            interleaved(4, 2, 8)?,
        ),
    ])
}

/// The fixture text: title, simulated idle time, the grid, then the lowered program text.
fn golden_text(title: &str, schedule: &Schedule) -> Result<String> {
    let lowered = lower(schedule)?;
    validate(&lowered)?;
    let usage = simulate(&lowered, &Costs::unit(lowered.stages))?;
    Ok(format!(
        "# {title}\n# unit costs F=1 B=2 comm=0: makespan {}, idle fraction {:.4}\n\n{}\n{lowered}",
        usage.makespan,
        usage.idle_fraction,
        render_grid(&lowered),
    ))
}

/// Compare with (or, under WEFT_BLESS=1, rewrite) one fixture.
fn check(name: &str, actual: &str) {
    let path = fixture_dir().join(format!("{name}.txt"));
    if std::env::var(BLESS).as_deref() == Ok("1") {
        std::fs::create_dir_all(fixture_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with {BLESS}=1 and review it",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .map_or_else(|| "a trailing line".into(), |i| format!("line {}", i + 1));
        panic!(
            "{} differs at {line}; rerun with {BLESS}=1 if the change is intended.\n\
             --- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

#[test]
fn golden_grids_match_fixtures() {
    for (name, title, schedule) in cases().unwrap() {
        check(name, &golden_text(title, &schedule).unwrap());
    }
}

#[test]
fn golden_deadlock_message_matches_fixture() {
    let err = validate(&super::errors::deadlocked()).unwrap_err();
    check("deadlock_s2_m4", &format!("{err}\n"));
}

/// Every fixture file belongs to a case, so a renamed case cannot leave a stale golden behind.
#[test]
fn every_fixture_has_a_case() {
    let mut names: Vec<String> = cases()
        .unwrap()
        .iter()
        .map(|(name, _, _)| format!("{name}.txt"))
        .collect();
    names.push("deadlock_s2_m4.txt".into());
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(names.contains(&file), "stale schedule fixture {file}");
    }
}

/// Blessing rewrites fixtures instead of checking them, so a run with it on must not pass as a
/// normal test run.
#[test]
fn blessing_is_off() {
    assert!(
        std::env::var_os(BLESS).is_none(),
        "{BLESS} is set: the schedule fixtures were rewritten, not checked; review the diff and \
         rerun without it"
    );
}
