//! The CUDA C kernel sources, one module per layer family, compiled at run time by NVRTC.
//!
//! Every float kernel is a template over the element type (f32, bf16, f16, with f32
//! arithmetic) instantiated as `extern "C"` entry points named `<kernel>_<suffix>`:
//! `layer_norm_forward_bf16`. Data movement is instantiated by element width (`_b32`, `_b16`).
//! `prelude.cuh` (16-bit float types, block reductions) is prepended to every module.
//!
//! | module       | kernels                                                                 |
//! |--------------|-------------------------------------------------------------------------|
//! | elementwise  | unary / binary / scale / fill / add_inplace / sum_to / sum_squares;     |
//! |              | cast_<from>_<to> between f32, bf16, f16                                 |
//! | shape        | strided_copy (reshape, permute, slice, concat, expand)                  |
//! | reduce       | reduce_forward (sum, mean, max), max_backward                           |
//! | softmax      | softmax and fused cross-entropy, forward and backward                   |
//! | layer_norm   | layer_norm forward, backward, row stats, backward weight                |
//! | embedding    | embedding forward and scatter-add backward                              |
//! | dropout      | dropout forward and backward (weft_core::rng's counter-based mask)      |
//! | attention    | fused causal attention forward; backward stats, dq, dkv                 |
//! | optim        | fused SGD and Adam/AdamW updates                                        |
//! | collective   | rank-ordered reduction over peers' buffers (virtual devices on one GPU) |

use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};

pub mod codes;
use weft_core::{Error, Result};

/// Shared definitions prepended to every module.
const PRELUDE: &str = include_str!("prelude.cuh");

/// One compilation unit.
#[derive(Debug, Clone, Copy)]
pub struct Module {
    pub name: &'static str,
    body: &'static str,
    /// Kernel stems; each exists once per suffix in `suffixes`.
    pub kernels: &'static [&'static str],
    pub suffixes: &'static [&'static str],
}

impl Module {
    /// The full source NVRTC compiles.
    pub fn source(&self) -> String {
        // `#line` so NVRTC's log points into the module's own file, not past the prelude.
        let codes = codes::defines();
        format!(
            "{PRELUDE}\n{codes}#line 1 \"{}.cu\"\n{}",
            self.name, self.body
        )
    }

    /// Every entry point's name.
    pub fn entry_points(&self) -> Vec<String> {
        self.kernels
            .iter()
            .flat_map(|k| self.suffixes.iter().map(move |s| format!("{k}_{s}")))
            .collect()
    }
}

const FLOATS: &[&str] = &["f32", "bf16", "f16"];

/// All kernel modules.
pub const MODULES: &[Module] = &[
    Module {
        name: "elementwise",
        body: include_str!("elementwise.cu"),
        kernels: &[
            "unary_forward",
            "unary_backward",
            "binary_forward",
            "scale",
            "scale_inplace",
            "fill",
            "add_inplace",
            "sum_to",
            "cast_f32",
            "cast_bf16",
            "cast_f16",
            "sum_squares",
        ],
        suffixes: FLOATS,
    },
    Module {
        name: "shape",
        body: include_str!("shape.cu"),
        kernels: &["strided_copy"],
        suffixes: &["b32", "b16"],
    },
    Module {
        name: "reduce",
        body: include_str!("reduce.cu"),
        kernels: &["reduce_forward", "max_backward"],
        suffixes: FLOATS,
    },
    Module {
        name: "softmax",
        body: include_str!("softmax.cu"),
        kernels: &[
            "softmax_forward",
            "softmax_backward",
            "cross_entropy_forward",
            "cross_entropy_backward",
        ],
        suffixes: FLOATS,
    },
    Module {
        name: "layer_norm",
        body: include_str!("layer_norm.cu"),
        kernels: &[
            "layer_norm_forward",
            "layer_norm_backward",
            "layer_norm_row_stats",
            "layer_norm_backward_weight",
        ],
        suffixes: FLOATS,
    },
    Module {
        name: "embedding",
        body: include_str!("embedding.cu"),
        kernels: &["embedding_forward", "embedding_backward"],
        suffixes: FLOATS,
    },
    Module {
        name: "dropout",
        body: include_str!("dropout.cu"),
        kernels: &["dropout_forward", "dropout_backward"],
        suffixes: FLOATS,
    },
    Module {
        name: "attention",
        body: include_str!("attention.cu"),
        kernels: &[
            "causal_attention_forward",
            "causal_attention_backward_stats",
            "causal_attention_backward_dq",
            "causal_attention_backward_dkv",
        ],
        suffixes: FLOATS,
    },
    Module {
        name: "optim",
        body: include_str!("optim.cu"),
        kernels: &["sgd_update", "adam_update"],
        suffixes: FLOATS,
    },
    Module {
        name: "collective",
        body: include_str!("collective.cu"),
        kernels: &["collective_reduce"],
        // Gradients and the rest of what is reduced are f32.
        suffixes: &["f32"],
    },
];

/// The architectures CI checks every module for (A100 and H100).
pub const CHECK_ARCHS: [&str; 2] = ["sm_80", "sm_90"];

/// Compiles `module` for `arch` (`sm_80`, or `compute_90` for PTX the driver JIT-compiles) to
/// PTX. A compile failure is `Error::Device` carrying NVRTC's log.
pub fn compile(module: &Module, arch: &str) -> Result<Ptx> {
    let opts = CompileOptions {
        options: vec![
            format!("--gpu-architecture={arch}"),
            "--std=c++17".into(),
            // No fast math: expf/tanhf/division stay IEEE-accurate, so results match the CPU
            // backend within f32 rounding (the op harness checks 1e-5).
        ],
        name: Some(format!("{}.cu", module.name)),
        ..Default::default()
    };
    let source = module.source();
    crate::loader::guard("NVRTC", || {
        cudarc::nvrtc::compile_ptx_with_opts(&source, opts)
            .map_err(|e| compile_error(module, arch, e))
    })
}

fn compile_error(module: &Module, arch: &str, e: CompileError) -> Error {
    let detail = match e {
        CompileError::CompileError { nvrtc, log, .. } => {
            format!("{nvrtc:?}\n{}", log.to_string_lossy())
        }
        other => format!("{other:?}"),
    };
    Error::Device {
        message: format!(
            "NVRTC could not compile kernel module '{}' for {arch}: {detail}",
            module.name
        ),
    }
}
