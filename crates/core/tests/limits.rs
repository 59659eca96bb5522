//! Sizes a user chose that cannot fit are `WEFT_RESOURCE` errors naming the quantity, the size
//! and the limit, before anything is allocated or spawned (issue 18: these aborted the process,
//! spawned threads until the OS refused, or wrapped around).

mod common;
use common::*;
use weft_core::resource::host_memory;

/// An MLP `sizes[0] -> sizes[1] -> ... ` with a cross-entropy loss.
fn mlp(sizes: &[usize]) -> Graph {
    let mut b = GraphBuilder::new();
    let x = b
        .input(
            "x",
            Shape(vec![Dim::Batch(1), Dim::Fixed(sizes[0])]),
            DType::F32,
        )
        .unwrap();
    let y = b
        .input("y", Shape(vec![Dim::Batch(1)]), DType::I32)
        .unwrap();
    let mut h = x;
    for (i, w) in sizes.windows(2).enumerate() {
        h = linear(&mut b, h, &format!("fc{i}"), w[0], w[1]);
    }
    let loss = mean_cross_entropy(&mut b, h, y);
    b.finish(loss).unwrap()
}

fn compile_err(sizes: &[usize], opts: serde_json::Value) -> weft_core::error::Error {
    let opts = TrainerOptions::from_json(&opts).unwrap();
    Trainer::compile(mlp(sizes), opts).err().unwrap()
}

#[test]
fn a_model_larger_than_the_host_is_a_resource_error_naming_the_parameter() {
    let Some(limit) = host_memory() else {
        return; // no /proc/meminfo: nothing to compare with on this OS
    };
    let e = compile_err(
        &[100_000_000, 100_000_000, 2],
        serde_json::json!({"batch": 2}),
    );
    assert_eq!(e.code(), "WEFT_RESOURCE");
    let text = e.to_string();
    let head = "parameter 'fc0.weight' [100000000, 100000000] f32 needs 35.5 PiB \
                (40000000000000000 bytes), more than this host's memory (";
    assert!(text.starts_with(head), "{text}");
    assert!(text.ends_with(&format!(
        "{})",
        weft_core::resource::human_bytes(limit as u128)
    )));
}

#[test]
fn a_batch_input_larger_than_the_host_is_a_resource_error() {
    if host_memory().is_none() {
        return;
    }
    let e = compile_err(&[1_000_000, 2], serde_json::json!({"batch": 2_000_000_000}));
    assert_eq!(e.code(), "WEFT_RESOURCE");
    assert!(
        e.to_string().starts_with(
            "batch input 'x' [2000000000, 1000000] f32 needs 7.1 PiB (8000000000000000 bytes)"
        ),
        "{e}"
    );
}

#[test]
fn a_batch_beyond_32_bits_is_refused_not_wrapped() {
    let e = TrainerOptions::from_json(&serde_json::json!({"batch": 4_294_967_300u64})).unwrap_err();
    assert_eq!(e.code(), "WEFT_RESOURCE");
    assert_eq!(
        e.to_string(),
        "batch=4294967300 is more than the limit of 2147483647 (batch sizes travel as 32-bit \
         integers)"
    );
}

#[test]
fn too_many_communicators_are_refused_before_any_thread_starts() {
    let e = compile_err(
        &[4, 3],
        serde_json::json!({"batch": 4, "devices": "cpu:2",
            "config": {"communication.num_communicators": 100_000}}),
    );
    assert_eq!(e.code(), "WEFT_RESOURCE");
    assert_eq!(
        e.to_string(),
        "communication.num_communicators=100000 is more than the limit of 64 (each is a thread \
         on every device)"
    );
}
