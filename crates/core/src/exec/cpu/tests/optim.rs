//! Optimizer updates against values worked out by hand from the PyTorch update rules
//! (torch.optim.SGD / Adam / AdamW, single-tensor path) in double precision, for two steps from
//! p = [1, -2, 0.5] with gradients g1 = [0.1, -0.2, 0.3] then g2 = [0.05, 0.4, -0.1].

use super::*;
use crate::error::Error;
use crate::exec::UpdateRule;

const P0: [f32; 3] = [1.0, -2.0, 0.5];
const GRADS: [[f32; 3]; 2] = [[0.1, -0.2, 0.3], [0.05, 0.4, -0.1]];

/// Two steps of `rule`; returns the parameter and the state buffers.
fn two_steps(rule: &UpdateRule) -> (Vec<f32>, Vec<Vec<f32>>) {
    let be = backend();
    let mut p = HostData::F32(P0.to_vec());
    let mut state: Vec<HostData> = (0..rule.state_count())
        .map(|_| HostData::zeros(DType::F32, 3))
        .collect();
    for (i, g) in GRADS.iter().enumerate() {
        be.update(
            rule,
            i as u64 + 1,
            &mut p,
            &HostData::F32(g.to_vec()),
            &mut state,
            0..3,
        )
        .unwrap();
    }
    let state = state.iter().map(|s| s.as_f32().unwrap().to_vec()).collect();
    (p.as_f32().unwrap().to_vec(), state)
}

fn sgd(lr: f32, momentum: f32, dampening: f32, nesterov: bool, weight_decay: f32) -> UpdateRule {
    UpdateRule::Sgd(crate::exec::Sgd {
        lr,
        momentum,
        dampening,
        nesterov,
        weight_decay,
    })
}

fn adam(weight_decay: f32, decoupled: bool) -> UpdateRule {
    UpdateRule::Adam(crate::exec::Adam {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay,
        decoupled,
    })
}

#[test]
fn sgd_plain() {
    let (p, state) = two_steps(&sgd(0.1, 0.0, 0.0, false, 0.0));
    assert!(state.is_empty());
    assert_close(&p, &[0.985, -2.02, 0.48], 1e-6, "sgd");
}

#[test]
fn sgd_momentum_dampening_weight_decay() {
    // Step 1 initialises buf to the (decayed) gradient; step 2 buf = 0.9 buf + 0.9 d.
    let (p, state) = two_steps(&sgd(0.1, 0.9, 0.1, false, 0.01));
    assert_close(
        &p,
        &[0.9737099, -1.9924198, 0.45062745],
        1e-6,
        "sgd momentum p",
    );
    assert_close(
        &state[0],
        &[0.152901, 0.144198, 0.1887255],
        1e-6,
        "sgd momentum buf",
    );
}

#[test]
fn sgd_nesterov() {
    let (p, state) = two_steps(&sgd(0.1, 0.9, 0.0, true, 0.01));
    assert_close(
        &p,
        &[0.95882971, -2.01265942, 0.435505105],
        1e-6,
        "sgd nesterov p",
    );
    assert_close(
        &state[0],
        &[0.158791, 0.182418, 0.1789205],
        1e-6,
        "sgd nesterov buf",
    );
}

#[test]
fn adam_without_weight_decay() {
    let (p, s) = two_steps(&adam(0.0, false));
    assert_close(
        &p,
        &[0.980678205791187, -1.9936610356546038, 0.48599781479280807],
        1e-6,
        "adam p",
    );
    assert_close(&s[0], &[0.014, 0.022, 0.017], 1e-6, "adam m");
    assert_close(&s[1], &[1.249e-5, 1.9996e-4, 9.991e-5], 1e-6, "adam v");
}

#[test]
fn adam_with_l2_weight_decay() {
    let (p, s) = two_steps(&adam(0.1, false));
    assert_close(
        &p,
        &[0.9801804937453342, -1.9873559274772667, 0.4844430174967703],
        1e-6,
        "adam l2 p",
    );
    assert_close(
        &s[0],
        &[0.032900000005, -0.0159000000025, 0.026400000002857135],
        1e-6,
        "adam l2 m",
    );
    assert_close(
        &s[1],
        &[
            6.216100001490007e-05,
            0.00020024099998995021,
            0.0001249784999970858,
        ],
        1e-6,
        "adam l2 v",
    );
}

#[test]
fn adamw_decoupled_weight_decay() {
    let (p, s) = two_steps(&adam(0.1, true));
    assert_close(
        &p,
        &[0.978689205790187, -1.989673035654104, 0.48500831479247475],
        1e-6,
        "adamw p",
    );
    assert_close(&s[0], &[0.014, 0.022, 0.017], 1e-6, "adamw m");
}

#[test]
fn large_tensors_update_like_small_ones() {
    // The parallel chunked path must match the serial math element for element.
    let n = 70_000;
    let rule = adam(0.1, true);
    let be = backend();
    let p0 = rand(n, 1);
    let grads = [rand(n, 2), rand(n, 3)];
    let mut p = HostData::F32(p0.clone());
    let mut state = vec![
        HostData::zeros(DType::F32, n),
        HostData::zeros(DType::F32, n),
    ];
    for (i, g) in grads.iter().enumerate() {
        be.update(
            &rule,
            i as u64 + 1,
            &mut p,
            &HostData::F32(g.clone()),
            &mut state,
            0..n,
        )
        .unwrap();
    }
    for j in [0, 1, 12_345, n - 1] {
        let mut ps = HostData::F32(vec![p0[j]]);
        let mut ss = vec![
            HostData::zeros(DType::F32, 1),
            HostData::zeros(DType::F32, 1),
        ];
        for (i, g) in grads.iter().enumerate() {
            be.update(
                &rule,
                i as u64 + 1,
                &mut ps,
                &HostData::F32(vec![g[j]]),
                &mut ss,
                0..1,
            )
            .unwrap();
        }
        assert_eq!(
            ps.as_f32().unwrap()[0],
            p.as_f32().unwrap()[j],
            "element {j}"
        );
    }
}

#[test]
fn update_checks_state_and_lengths() {
    let be = backend();
    let mut p = HostData::F32(vec![0.0; 3]);
    let g = HostData::F32(vec![0.0; 3]);
    let err = be
        .update(&adam(0.0, false), 1, &mut p, &g, &mut [], 0..3)
        .unwrap_err();
    assert!(matches!(err, Error::Internal { .. }), "{err}");
    let short = HostData::F32(vec![0.0; 2]);
    let err = be
        .update(
            &sgd(0.1, 0.0, 0.0, false, 0.0),
            1,
            &mut p,
            &short,
            &mut [],
            0..3,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Internal { .. }), "{err}");
    let err = be
        .update(
            &sgd(0.1, 0.0, 0.0, false, 0.0),
            1,
            &mut p,
            &g,
            &mut [],
            1..4,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Internal { .. }), "{err}");
}

#[test]
fn a_ranged_update_is_the_full_update_on_its_range_and_leaves_the_rest() {
    // ZeRO updates a shard of a parameter with a shard-sized state.
    let be = backend();
    let rule = adam(0.01, true);
    let (n, range) = (10, 3..7);
    let p0: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - 0.3).collect();
    let grads: Vec<Vec<f32>> = (0..2)
        .map(|k| (0..n).map(|i| ((i * 7 + k) % 5) as f32 - 2.0).collect())
        .collect();
    let (mut full, mut part) = (HostData::F32(p0.clone()), HostData::F32(p0.clone()));
    let mut full_state = vec![
        HostData::zeros(DType::F32, n),
        HostData::zeros(DType::F32, n),
    ];
    let mut part_state = vec![
        HostData::zeros(DType::F32, 4),
        HostData::zeros(DType::F32, 4),
    ];
    for (i, g) in grads.iter().enumerate() {
        let g = HostData::F32(g.clone());
        be.update(&rule, i as u64 + 1, &mut full, &g, &mut full_state, 0..n)
            .unwrap();
        be.update(
            &rule,
            i as u64 + 1,
            &mut part,
            &g,
            &mut part_state,
            range.clone(),
        )
        .unwrap();
    }
    let (full, part) = (full.as_f32().unwrap(), part.as_f32().unwrap());
    assert_eq!(&part[range.clone()], &full[range.clone()]);
    assert_eq!(&part[..3], &p0[..3]);
    assert_eq!(&part[7..], &p0[7..]);
    assert_eq!(
        part_state[1].as_f32().unwrap(),
        &full_state[1].as_f32().unwrap()[range]
    );
}

#[test]
fn sum_squares_scale_and_add_in_place() {
    let be = backend();
    let x = rand(100_001, 4);
    let want: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
    let got = be.sum_squares(&HostData::F32(x.clone())).unwrap();
    assert!((got - want).abs() < 1e-9 * want, "{got} vs {want}");
    let mut buf = HostData::F32(x.clone());
    be.scale_inplace(&mut buf, 0.5).unwrap();
    be.add_inplace(&mut buf, &HostData::F32(x.clone())).unwrap();
    let want: Vec<f64> = x.iter().map(|&v| v as f64 * 1.5).collect();
    assert_close(buf.as_f32().unwrap(), &want, 1e-7, "0.5x + x");
    let err = be
        .add_inplace(&mut buf, &HostData::F32(vec![0.0; 3]))
        .unwrap_err();
    assert!(matches!(err, Error::Internal { .. }), "{err}");
    let err = be.sum_squares(&HostData::I32(vec![1])).unwrap_err();
    assert!(matches!(err, Error::DType { .. }), "{err}");
}
