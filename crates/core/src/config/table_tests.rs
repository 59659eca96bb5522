//! The key table's own checks: the EPL keys, defaults, lookups.
use super::*;

#[test]
fn table_has_all_26_epl_keys_in_10_sections_plus_weft_keys_split_and_executor() {
    let epl: Vec<&str> = KEYS
        .iter()
        .filter(|s| s.origin == Origin::Epl)
        .map(|s| s.key)
        .collect();
    assert_eq!(epl.len(), 26);
    let weft: Vec<&str> = KEYS
        .iter()
        .filter(|s| s.origin == Origin::Weft)
        .map(|s| s.key)
        .collect();
    assert_eq!(
        weft,
        [
            "pipeline.num_virtual_stages",
            "amp.dtype",
            "cluster.layout",
            "cluster.specific",
            "cluster.aware_row",
            "communication.bucket_size_mb",
            "communication.timeout_s",
            "communication.insecure_store",
            "auto.stage_policy",
            "split.sequence_parallel",
            "executor.cooperative",
        ]
    );
    assert_eq!(
        sections(),
        [
            "pipeline",
            "gradient_checkpoint",
            "zero",
            "offload",
            "amp",
            "optimizer",
            "cluster",
            "communication",
            "io",
            "auto",
            "split",
            "executor"
        ]
    );
    let mut keys: Vec<&str> = KEYS.iter().map(|s| s.key).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), KEYS.len(), "duplicate key");
}

#[test]
fn defaults_match_epl() {
    let expect = |key: &str, v: ConfigValue| {
        assert_eq!(lookup(key).unwrap().default_value(), v, "{key}");
    };
    let s = |t: &str| ConfigValue::Str(t.to_string());
    expect("pipeline.num_micro_batch", ConfigValue::Int(1));
    expect("pipeline.num_stages", ConfigValue::Int(-1));
    expect("pipeline.strategy", s("PreferBackward"));
    expect("gradient_checkpoint.type", s(""));
    expect("gradient_checkpoint.end_taskgraph", ConfigValue::Int(-1));
    expect("amp.loss_scale", s("dynamic"));
    expect(
        "cluster.device_place_prefer_intra_node",
        ConfigValue::Bool(true),
    );
    expect("communication.num_communicators", ConfigValue::Int(2));
    expect("communication.max_splits", ConfigValue::Int(5));
    expect("communication.fp16_scale", ConfigValue::Int(128));
    expect("communication.gradients_reduce_method", s("mean"));
    expect("communication.bucket_size_mb", ConfigValue::Int(4));
    expect("communication.timeout_s", ConfigValue::Int(300));
    expect("amp.dtype", s(""));
    expect("cluster.layout", s("auto"));
    expect("auto.auto_parallel", ConfigValue::Bool(false));
}

#[test]
fn struct_defaults_agree_with_table_and_getters() {
    let c = Config::default();
    assert_eq!(c.pipeline.num_micro_batch, 1);
    assert_eq!(c.gradient_checkpoint.kind, GcType::Off);
    assert_eq!(c.amp.loss_scale, LossScale::Dynamic);
    for spec in KEYS {
        assert_eq!(spec.get(&c), spec.default_value(), "{}", spec.key);
    }
}

#[test]
fn setters_write_the_named_field() {
    let mut c = Config::default();
    lookup("gradient_checkpoint.type")
        .unwrap()
        .set(&mut c, &ConfigValue::Str("auto".into()))
        .unwrap();
    assert_eq!(c.gradient_checkpoint.kind, GcType::Auto);
    lookup("communication.max_splits")
        .unwrap()
        .set(&mut c, &ConfigValue::Int(9))
        .unwrap();
    assert_eq!(c.communication.max_splits, 9);
}

#[test]
fn spec_metadata() {
    let spec = lookup("gradient_checkpoint.end_taskgraph").unwrap();
    assert_eq!(spec.env_var(), "WEFT_GRADIENT_CHECKPOINT_END_TASKGRAPH");
    assert_eq!(
        (spec.section, spec.attribute),
        ("gradient_checkpoint", "end_taskgraph")
    );
    let spec = lookup("pipeline.strategy").unwrap();
    assert_eq!(
        spec.allowed,
        ["PreferForward", "PreferBackward", "PreferBackwardOptimizer"]
    );
    assert_eq!(spec.ty, ValueType::Str);
    assert_eq!(lookup("amp.loss_scale").unwrap().ty, ValueType::LossScale);
    assert!(
        lookup("pipeline.num_micro_batch")
            .unwrap()
            .unsupported
            .is_none()
    );
    assert!(lookup("zero.level").unwrap().unsupported.is_none());
}

#[test]
fn unknown_key_messages() {
    let err = spec_or_err("pipline.num_micro_batch").unwrap_err();
    assert_eq!(
        err,
        Error::config(
            "pipline.num_micro_batch",
            "unknown config key 'pipline.num_micro_batch'; \
             did you mean 'pipeline.num_micro_batch'?"
        )
    );
    let msg = |k: &str| match unknown_key(k) {
        Error::Config { message, .. } => message,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        msg("pipeline.num_micro_batches"),
        "unknown config key 'pipeline.num_micro_batches'; \
         did you mean 'pipeline.num_micro_batch'?"
    );
    assert_eq!(
        msg("loss_scale"),
        "unknown config key 'loss_scale'; did you mean 'amp.loss_scale'?"
    );
    assert_eq!(
        msg("comm.fp16_scale"),
        "unknown config key 'comm.fp16_scale'; did you mean 'communication.fp16_scale'?"
    );
    assert_eq!(
        msg("learning_rate"),
        "unknown config key 'learning_rate'; keys are 'section.attribute' with sections \
         pipeline, gradient_checkpoint, zero, offload, amp, optimizer, cluster, \
         communication, io, auto, split, executor"
    );
}
