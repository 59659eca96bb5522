//! Evaluation under the compiled parallel layout at batch sizes other than the compiled one: a
//! divisor and a multiple of the global batch give the loss and outputs of an unreplicated
//! layout compiled for exactly those rows; any other size is refused by name.

mod common;

use common::*;

/// The first `rows` rows of a batch, or the rows of several batches one after the other.
fn rows_of(batches: &[BTreeMap<String, HostData>], rows: usize) -> BTreeMap<String, HostData> {
    let mut out = BTreeMap::new();
    for key in ["idx", "targets"] {
        let all: Vec<i32> = batches
            .iter()
            .flat_map(|b| b[key].as_i32().unwrap().to_vec())
            .take(rows * T)
            .collect();
        out.insert(key.to_string(), HostData::I32(all));
    }
    out
}

/// The two stages on one device each, no replicas, compiled for `rows` rows (the same seed, so
/// the same weights).
fn single(rows: usize) -> Trainer {
    let mut o = options(2, 1, "PreferBackward", serde_json::json!({}));
    o.batch = rows;
    Trainer::compile(model(2), o).unwrap()
}

fn assert_close(
    got: &weft_core::session::StepReport,
    want: &weft_core::session::StepReport,
    what: &str,
) {
    assert!(
        (got.loss - want.loss).abs() < 1e-5,
        "{what}: loss {} vs {}",
        got.loss,
        want.loss
    );
    let (g, w) = (&got.outputs[0], &want.outputs[0]);
    assert_eq!(g.1, w.1, "{what}: logits dims");
    assert!(
        max_diff(&g.2, &w.2) < 1e-4,
        "{what}: logits differ by {}",
        max_diff(&g.2, &w.2)
    );
}

#[test]
fn a_divisor_or_a_multiple_of_the_compiled_batch_evaluates_like_a_device_compiled_for_it() {
    // dp 2 x pp 2 with 2 micro-batches: 2 rows per device and micro-batch.
    let mut t = Trainer::compile(
        model(2),
        options(4, 2, "PreferBackward", serde_json::json!({})),
    )
    .unwrap();
    let (b7, b8) = (batch(7), batch(8));
    for rows in [BATCH / 4, BATCH / 2, BATCH] {
        let half = rows_of(std::slice::from_ref(&b7), rows);
        assert_close(
            &t.evaluate(&half).unwrap(),
            &single(rows).evaluate(&half).unwrap(),
            &format!("{rows} rows"),
        );
    }
    let double = rows_of(&[b7, b8], 2 * BATCH);
    let got = t.evaluate(&double).unwrap();
    assert_eq!(got.outputs[0].1, vec![2 * BATCH * T, V]);
    assert_close(
        &got,
        &single(2 * BATCH).evaluate(&double).unwrap(),
        "two global batches",
    );
    // Nothing was trained by evaluating.
    assert_eq!(t.step_count(), 0);
}

#[test]
fn a_batch_that_neither_divides_nor_is_divided_by_the_compiled_one_is_refused() {
    let mut t = Trainer::compile(
        model(1),
        options(2, 1, "PreferBackward", serde_json::json!({})),
    )
    .unwrap();
    let e = t.evaluate(&rows_of(&[batch(1)], 3)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "batch: evaluate: a batch of 3 rows does not fit the compiled global batch 8; give a multiple or a divisor of 8"
    );
    let mut odd = rows_of(&[batch(1)], 4);
    odd.insert("targets".into(), HostData::I32(vec![0; 2 * T]));
    let e = t.evaluate(&odd).unwrap_err();
    assert_eq!(
        e.to_string(),
        "batch: evaluate: input 'targets' has 2 rows but 'idx' has 4"
    );
}

#[test]
fn labels_may_be_left_out_when_no_output_reads_them() {
    let mut t = Trainer::compile(
        model(2),
        options(4, 2, "PreferBackward", serde_json::json!({})),
    )
    .unwrap();
    let full = t.evaluate(&batch(3)).unwrap();
    for rows in [BATCH / 2, BATCH] {
        let mut no_labels = rows_of(&[batch(3)], rows);
        no_labels.remove("targets");
        let got = t.evaluate(&no_labels).unwrap();
        // The loss reads the labels: there is none; the logits are the labelled run's.
        assert!(got.loss.is_nan());
        let keep = rows * T * V;
        assert_eq!(
            got.outputs[0].2.as_f32().unwrap(),
            &full.outputs[0].2.as_f32().unwrap()[..keep]
        );
    }
    let mut no_tokens = batch(3);
    no_tokens.remove("idx");
    assert_eq!(
        t.evaluate(&no_tokens).unwrap_err().to_string(),
        "batch: evaluate: output 'logits' reads input 'idx', which the batch leaves out"
    );
}
