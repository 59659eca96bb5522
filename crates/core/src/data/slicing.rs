//! EPL's IO slicing (`io.slicing`): the shard list divided among workers (processes) in
//! proportion to their local data-parallel replica counts, as EPL's
//! `fetch_slice_objects_proportion_to_local_num_replicas` (epl/parallel/graph_editor.py) does:
//! workers are weighted by local replicas / gcd, file i goes to bucket i mod (replicas / gcd),
//! and each worker takes its contiguous range of buckets. With fewer files than buckets, or a
//! remainder that neither `io.drop_last_files` drops nor `io.unbalanced_io_slicing` allows,
//! slicing is off: every worker reads the whole list, repeated local/gcd times so a worker with
//! more replicas still gets a proportional share. (EPL also shuffles that repeated list with an
//! unseeded `random.shuffle`; weft's loader shuffles its shard order with the run's seed instead.)

/// How a worker's list came about, for `weft plan` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceKind {
    /// The worker reads its own range of buckets.
    Sliced,
    /// Fewer files than buckets: every worker reads everything.
    TooFewFiles,
    /// The files do not divide among the buckets (and neither option was set).
    Uneven,
}

/// One worker's files.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSlice<T> {
    pub files: Vec<T>,
    pub kind: SliceKind,
}

/// The options of EPL's `io` section that shape the division.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SliceOptions {
    pub drop_last_files: bool,
    pub unbalanced: bool,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The files worker `worker` reads, given every worker's local replica count (`local_replicas[w]`,
/// all positive). The division depends only on these counts, so every worker computes the same
/// partition without talking to the others.
pub fn slice_files<T: Clone>(
    files: &[T],
    local_replicas: &[usize],
    worker: usize,
    options: SliceOptions,
) -> WorkerSlice<T> {
    let g = local_replicas.iter().copied().fold(0, gcd).max(1);
    let buckets: usize = local_replicas.iter().sum::<usize>() / g;
    let weight = |w: usize| local_replicas.get(w).copied().unwrap_or(g) / g;
    let whole = |kind| WorkerSlice {
        files: (0..weight(worker).max(1))
            .flat_map(|_| files.iter().cloned())
            .collect(),
        kind,
    };
    if buckets == 0 || files.len() < buckets {
        return whole(SliceKind::TooFewFiles);
    }
    let remainder = files.len() % buckets;
    let mut kept = files;
    if remainder != 0 && !options.unbalanced {
        if !options.drop_last_files {
            return whole(SliceKind::Uneven);
        }
        kept = &files[..files.len() - remainder];
    }
    let start: usize = (0..worker).map(weight).sum();
    let range = start..start + weight(worker);
    WorkerSlice {
        files: kept
            .iter()
            .enumerate()
            .filter(|(i, _)| range.contains(&(i % buckets)))
            .map(|(_, f)| f.clone())
            .collect(),
        kind: SliceKind::Sliced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("file_{i}")).collect()
    }

    /// EPL's `tests/utils_test.py`, `test_fetch_slice_objects_proportion_to_local_num_replicas`,
    /// row for row: (local replicas per worker, file count, worker, drop_last, unbalanced,
    /// expected files sorted as the EPL test sorts them).
    /// (local replicas per worker, file count, worker, drop_last, unbalanced, expected files).
    type Row = (&'static [usize], usize, usize, bool, bool, &'static [usize]);

    #[test]
    fn reproduces_epl_utils_test_matrix() {
        #[rustfmt::skip]
        let table: &[Row] = &[
            // Scene 1: two workers with 2 replicas each (4 replicas).
            (&[2, 2], 2, 0, false, false, &[0]),
            (&[2, 2], 2, 1, false, false, &[1]),
            (&[2, 2], 4, 0, false, false, &[0, 2]),
            (&[2, 2], 4, 1, false, false, &[1, 3]),
            // Too few files: every worker reads everything.
            (&[2, 2], 1, 0, false, false, &[0]),
            (&[2, 2], 1, 1, false, false, &[0]),
            // Uneven: drop_last drops the remainder, otherwise everything.
            (&[2, 2], 3, 0, true, false, &[0]),
            (&[2, 2], 3, 0, false, false, &[0, 1, 2]),
            (&[2, 2], 3, 1, true, false, &[1]),
            (&[2, 2], 3, 1, false, false, &[0, 1, 2]),
            // Scene 2: workers with 4 and 2 replicas (gcd 2: weights 2 and 1, 3 buckets).
            (&[4, 2], 3, 0, false, false, &[0, 1]),
            (&[4, 2], 3, 1, false, false, &[2]),
            (&[4, 2], 2, 0, false, false, &[0, 0, 1, 1]),
            (&[4, 2], 2, 1, false, false, &[0, 1]),
            (&[4, 2], 4, 0, true, false, &[0, 1]),
            (&[4, 2], 4, 0, false, false, &[0, 0, 1, 1, 2, 2, 3, 3]),
            (&[4, 2], 4, 0, false, true, &[0, 1, 3]),
            (&[4, 2], 4, 1, true, false, &[2]),
            (&[4, 2], 4, 1, false, false, &[0, 1, 2, 3]),
            (&[4, 2], 4, 1, false, true, &[2]),
        ];
        for &(replicas, n, worker, drop_last_files, unbalanced, expected) in table {
            let options = SliceOptions {
                drop_last_files,
                unbalanced,
            };
            let mut got = slice_files(&files(n), replicas, worker, options).files;
            got.sort();
            let want: Vec<String> = expected.iter().map(|&i| format!("file_{i}")).collect();
            assert_eq!(
                got, want,
                "{replicas:?} replicas, {n} files, worker {worker}, {options:?}"
            );
        }
    }

    #[test]
    fn reports_why_slicing_was_off() {
        let o = SliceOptions::default();
        assert_eq!(
            slice_files(&files(4), &[1, 1], 1, o).kind,
            SliceKind::Sliced
        );
        assert_eq!(
            slice_files(&files(1), &[1, 1], 1, o).kind,
            SliceKind::TooFewFiles
        );
        assert_eq!(
            slice_files(&files(3), &[1, 1], 1, o).kind,
            SliceKind::Uneven
        );
        // One worker reads everything, in order.
        assert_eq!(slice_files(&files(3), &[4], 0, o).files, files(3));
    }
}
