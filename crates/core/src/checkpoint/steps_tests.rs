use super::*;
use crate::checkpoint::atomic::unique_temp_dir;
use crate::checkpoint::{CheckpointData, TensorEntry, load_dir, save_dir};
use crate::exec::HostData;

fn ckpt(step: u64) -> CheckpointData {
    CheckpointData {
        step,
        config: serde_json::json!({ "meta": step }),
        params: vec![TensorEntry::new(
            "w",
            vec![2],
            HostData::F32(vec![step as f32, 1.0]),
        )],
        optimizer: None,
    }
}

fn save(root: &Path, step: u64, keep: usize) -> PathBuf {
    save_step(root, step, keep, |d| save_dir(d, &ckpt(step))).unwrap()
}

fn names(root: &Path) -> Vec<String> {
    let mut n = writers::entry_names(root).unwrap();
    n.sort();
    n
}

#[test]
fn each_save_is_a_step_directory_and_latest_names_the_newest() {
    let root = unique_temp_dir("steps-keep1");
    save(&root, 3, 1);
    let dir = save(&root, 7, 1);
    assert_eq!(dir, root.join("step-00000007"));
    assert_eq!(names(&root), ["latest", "step-00000007"]);
    assert_eq!(
        fs::read_to_string(root.join(LATEST_FILE)).unwrap(),
        "step-00000007\n"
    );
    assert_eq!(resolve(&root).unwrap(), dir);
    assert_eq!(load_dir(&resolve(&root).unwrap()).unwrap(), ckpt(7));
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn keep_retires_the_oldest_and_never_the_one_just_written() {
    let root = unique_temp_dir("steps-keep2");
    for step in [1, 2, 3, 4] {
        save(&root, step, 2);
    }
    assert_eq!(names(&root), ["latest", "step-00000003", "step-00000004"]);
    // A run resumed from an older step: its save is kept although a higher step exists.
    save(&root, 2, 2);
    assert_eq!(names(&root), ["latest", "step-00000002", "step-00000004"]);
    assert_eq!(resolve(&root).unwrap(), root.join("step-00000002"));
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_second_save_at_one_step_gets_a_new_name() {
    let root = unique_temp_dir("steps-same");
    save(&root, 5, 3);
    let again = save(&root, 5, 3);
    assert_eq!(again, root.join("step-00000005.1"));
    assert_eq!(resolve(&root).unwrap(), again);
    assert_eq!(names(&root), ["latest", "step-00000005", "step-00000005.1"]);
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_missing_or_stale_pointer_falls_back_to_the_highest_step() {
    let root = unique_temp_dir("steps-stale");
    save(&root, 4, 3);
    save(&root, 9, 3);
    fs::write(root.join(LATEST_FILE), "step-00000012\n").unwrap();
    assert_eq!(resolve(&root).unwrap(), root.join("step-00000009"));
    fs::remove_file(root.join(LATEST_FILE)).unwrap();
    assert_eq!(resolve(&root).unwrap(), root.join("step-00000009"));
    // A step directory without its manifest is not complete.
    fs::remove_file(root.join("step-00000009").join(MANIFEST_FILE)).unwrap();
    assert_eq!(resolve(&root).unwrap(), root.join("step-00000004"));
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn the_single_directory_layout_still_loads_and_new_saves_go_beside_it() {
    let root = unique_temp_dir("steps-legacy");
    save_dir(&root, &ckpt(2)).unwrap();
    assert_eq!(resolve(&root).unwrap(), root);
    let dir = save(&root, 3, 1);
    assert_eq!(resolve(&root).unwrap(), dir);
    // A step directory given directly loads as itself.
    assert_eq!(resolve(&dir).unwrap(), dir);
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_failed_save_leaves_no_trace_and_the_previous_save_loads() {
    let root = unique_temp_dir("steps-fail");
    save(&root, 1, 1);
    let e = save_step(&root, 2, 1, |d| {
        save_dir(d, &ckpt(2))?;
        Err(Error::io("disk", "full"))
    })
    .unwrap_err();
    assert_eq!(e.code(), "WEFT_IO");
    assert_eq!(names(&root), ["latest", "step-00000001"]);
    assert_eq!(load_dir(&resolve(&root).unwrap()).unwrap(), ckpt(1));
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn keep_zero_is_refused() {
    let root = unique_temp_dir("steps-keep0");
    let e = save_step(&root, 1, 0, |_| Ok(())).unwrap_err();
    assert_eq!(
        e.to_string(),
        "keep must be at least 1 (the save just written is always kept)"
    );
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn nothing_to_load_is_a_typed_error_naming_the_path() {
    let root = unique_temp_dir("steps-empty");
    fs::create_dir(root.join(".weft-tmp-1-1@h")).unwrap();
    let e = resolve(&root).unwrap_err();
    assert_eq!(e.code(), "WEFT_CHECKPOINT");
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint {}: no checkpoint here: no step-* directory with a weft.json, and no \
             weft.json (not saved by weft, or every save was interrupted before it completed)",
            root.display()
        )
    );
    let missing = root.join("nope");
    assert_eq!(
        resolve(&missing).unwrap_err().to_string(),
        format!("checkpoint {}: no such directory", missing.display())
    );
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn an_unwritable_root_is_found_before_any_save() {
    let root = unique_temp_dir("steps-unwritable");
    let file = root.join("a-file");
    fs::write(&file, b"x").unwrap();
    let e = check_writable(&file.join("ck")).unwrap_err();
    assert_eq!(e.code(), "WEFT_IO");
    assert!(
        e.to_string().starts_with(&format!(
            "{}: checkpoints cannot be written here: ",
            file.join("ck").display()
        )),
        "{e}"
    );
    check_writable(&root.join("fresh")).unwrap();
    assert_eq!(names(&root.join("fresh")), Vec::<String>::new());
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn step_names_parse_only_what_saves_write() {
    for bad in [
        "step-", "step-x", "step-1.0", "step-1.", "step-+1", "steps-1", "step-1.a",
    ] {
        assert_eq!(StepName::parse(bad), None, "{bad}");
    }
    let n = StepName::parse("step-00000400.2").unwrap();
    assert_eq!(
        (n.step, n.version, n.name()),
        (400, 2, "step-00000400.2".into())
    );
    assert_eq!(
        StepName::parse("step-123456789").unwrap().name(),
        "step-123456789"
    );
}
