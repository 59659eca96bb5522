use super::*;
use crate::checkpoint::atomic::unique_temp_dir;
use crate::data::write_tokens;

/// Shards whose tokens are their own global index, so a batch tells where it came from.
fn shards(dir: &Path, sizes: &[u16]) -> Vec<PathBuf> {
    let mut start = 0u16;
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let p = dir.join(format!("train_{i:06}.bin"));
            write_tokens(&p, &(start..start + n).collect::<Vec<_>>()).unwrap();
            start += n;
            p
        })
        .collect()
}

fn epoch_starts(l: &mut ShardLoader, batches: usize) -> Vec<i32> {
    (0..batches)
        .map(|_| l.next_batch().unwrap().inputs[0])
        .collect()
}

#[test]
fn an_epoch_visits_every_window_once_in_a_seeded_order() {
    let dir = unique_temp_dir("shards-epoch");
    let paths = shards(&dir, &[41, 9, 30]);
    // B*T = 8: windows per shard = (len - 1 - shift) / 8 -> 4 or 5, 1, 3 or so; count them.
    let mut l = ShardLoader::new(paths.clone(), 7, 2, 4).unwrap();
    let windows: usize = (0..3).map(|s| l.grid(s).1).sum();
    let first = epoch_starts(&mut l, windows);
    assert_eq!(l.state().epoch, 0);
    let mut sorted = first.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        windows,
        "a window repeated within an epoch: {first:?}"
    );
    // Each batch is B*T+1 consecutive tokens of one shard.
    let b = ShardLoader::new(paths.clone(), 7, 2, 4)
        .unwrap()
        .next_batch()
        .unwrap();
    assert_eq!(b.targets[7], b.inputs[0] + 8);
    // Same seed, same order; another seed, another; the next epoch reshuffles.
    let mut again = ShardLoader::new(paths.clone(), 7, 2, 4).unwrap();
    assert_eq!(epoch_starts(&mut again, windows), first);
    let mut other = ShardLoader::new(paths.clone(), 8, 2, 4).unwrap();
    assert_ne!(epoch_starts(&mut other, windows), first);
    let second = epoch_starts(&mut l, 3);
    assert_eq!(l.state().epoch, 1);
    assert_ne!(second, first[..3]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_saved_state_resumes_the_same_stream() {
    let dir = unique_temp_dir("shards-resume");
    let paths = shards(&dir, &[50, 50, 50]);
    let mut l = ShardLoader::new(paths.clone(), 1, 1, 6).unwrap();
    epoch_starts(&mut l, 11);
    let saved = l.state();
    let json = serde_json::to_string(&saved).unwrap();
    let rest = epoch_starts(&mut l, 30);
    let mut resumed = ShardLoader::new(paths, 1, 1, 6).unwrap();
    resumed
        .set_state(serde_json::from_str(&json).unwrap())
        .unwrap();
    assert_eq!(epoch_starts(&mut resumed, 30), rest);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn too_small_shards_and_resolution_errors() {
    let dir = unique_temp_dir("shards-small");
    let paths = shards(&dir, &[4, 6]);
    let e = ShardLoader::new(paths.clone(), 0, 2, 4).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "data file {}: the largest of 2 shards has 6 tokens, fewer than the B*T+1 = 9 one \
             batch needs (B=2, T=4)",
            paths[1].display()
        )
    );
    let glob = format!("{}/train_*.bin", dir.display());
    assert_eq!(DataSet::resolve(&glob).unwrap().shards, paths);
    let list = format!("{},{}", paths[1].display(), paths[0].display());
    assert_eq!(
        DataSet::resolve(&list).unwrap().shards,
        [paths[1].clone(), paths[0].clone()]
    );
    let none = format!("{}/nothing_*.bin", dir.display());
    assert_eq!(
        DataSet::resolve(&none).unwrap_err().to_string(),
        format!("data file {none}: names no shard files")
    );
    std::fs::remove_dir_all(dir).unwrap();
}
