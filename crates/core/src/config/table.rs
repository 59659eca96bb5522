//! THE key table: one entry per config key (type, default, minimum, allowed values, support
//! status, origin, doc). The `Config` struct, its defaults, parsing, validation, the docs table
//! and key suggestions are all derived from it; adding a key is adding one entry here.

use super::suggest;
use super::value::{
    AmpDtype, AmpLevel, ClusterLayout, ConfigValue, Field, GcType, LossScale, OffloadLevel,
    PipelineStrategy, ReduceMethod, StagePolicyChoice, ValueType, ZeroLevel,
};
use crate::error::{Error, Result};

/// Where a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// One of EPL's 26 keys, with EPL's default.
    Epl,
    /// Added by weft.
    Weft,
}

/// One config key: everything the parser, the validator, the docs and the TS side need.
#[derive(Debug)]
pub struct KeySpec {
    /// Dotted snake_case key, e.g. `pipeline.num_micro_batch`.
    pub key: &'static str,
    pub section: &'static str,
    pub attribute: &'static str,
    pub ty: ValueType,
    /// For string keys with a closed set of values: the canonical spellings (matched
    /// case-insensitively). Empty when any value of `ty` is accepted.
    pub allowed: &'static [&'static str],
    /// Smallest accepted value of an int key.
    pub min: Option<i64>,
    /// When set, any non-default value is parsed but rejected by `Config::check_supported`
    /// with this reason.
    pub unsupported: Option<&'static str>,
    pub origin: Origin,
    pub doc: &'static str,
    default: fn() -> ConfigValue,
    get: fn(&Config) -> ConfigValue,
    set: fn(&mut Config, &ConfigValue) -> Result<()>,
}

impl KeySpec {
    pub fn default_value(&self) -> ConfigValue {
        (self.default)()
    }

    /// The environment variable that sets this key: `WEFT_<SECTION>_<ATTRIBUTE>`.
    pub fn env_var(&self) -> String {
        format!("WEFT_{}_{}", self.section, self.attribute).to_ascii_uppercase()
    }

    pub(crate) fn get(&self, config: &Config) -> ConfigValue {
        (self.get)(config)
    }

    /// Store an already validated value.
    pub(crate) fn set(&self, config: &mut Config, value: &ConfigValue) -> Result<()> {
        (self.set)(config, value)
    }
}

/// The attribute part of a key: the field name, or an explicit name where the field cannot be
/// (`type` is a Rust keyword).
macro_rules! key_attr {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident $name:literal) => {
        $name
    };
}

macro_rules! config_table {
    ($(
        $(#[doc = $sdoc:literal])+
        $section:ident: $Struct:ident {
            $(
                $field:ident $(as $name:literal)?: $ty:ty {
                    default: $default:expr,
                    min: $min:expr,
                    origin: $origin:ident,
                    unsupported: $todo:expr,
                    doc: $doc:literal $(,)?
                }
            )+
        }
    )+) => {
        $(
            $(#[doc = $sdoc])+
            #[derive(Debug, Clone, PartialEq)]
            pub struct $Struct {
                $(#[doc = $doc] pub $field: $ty,)+
            }

            impl Default for $Struct {
                fn default() -> Self {
                    Self { $($field: $default,)+ }
                }
            }
        )+

        /// Every config key, typed, one field per section. `Default` gives EPL's defaults (and
        /// weft's for weft's own keys).
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct Config {
            $($(#[doc = $sdoc])+ pub $section: $Struct,)+
            /// The keys the environment set and from which variable (`weft plan` shows them).
            pub env_reads: Vec<super::env::EnvRead>,
        }

        static KEYS: &[KeySpec] = &[$($(
            KeySpec {
                key: concat!(stringify!($section), ".", key_attr!($field $($name)?)),
                section: stringify!($section),
                attribute: key_attr!($field $($name)?),
                ty: <$ty as Field>::TYPE,
                allowed: <$ty as Field>::ALLOWED,
                min: $min,
                unsupported: $todo,
                origin: Origin::$origin,
                doc: $doc,
                default: || {
                    let value: $ty = $default;
                    value.to_value()
                },
                get: |c| c.$section.$field.to_value(),
                set: |c, v| {
                    let key = concat!(stringify!($section), ".", key_attr!($field $($name)?));
                    c.$section.$field = <$ty as Field>::from_value(key, v)?;
                    Ok(())
                },
            },
        )+)+];
    };
}

config_table! {
    /// Pipeline parallelism and micro-batching.
    pipeline: PipelineConfig {
        num_micro_batch: usize {
            default: 1, min: Some(1), origin: Epl,
            unsupported: None,
            doc: "Micro-batches per step. With several TaskGraphs: pipelining; with one: gradient \
                  accumulation over that many micro-batches.",
        }
        num_stages: i64 {
            default: -1, min: Some(-1), origin: Epl,
            unsupported: None,
            doc: "Stage count for automatic stage partition; used only with auto.auto_parallel and \
                  when > 1 (-1 = unset).",
        }
        strategy: PipelineStrategy {
            default: PipelineStrategy::PreferBackward, min: None, origin: Epl,
            unsupported: None,
            doc: "Pipeline schedule: PreferBackward (1F1B), PreferForward (GPipe: all forwards \
                  then all backwards) or PreferBackwardOptimizer; case-insensitive.",
        }
        num_virtual_stages: usize {
            default: 1, min: Some(1), origin: Weft,
            unsupported: None,
            doc: "Virtual stages (model chunks) per device for interleaved 1F1B: stage s runs on \
                  device s % (stages / V); 1 = not interleaved.",
        }
    }
    /// Gradient checkpointing (activation recomputation).
    gradient_checkpoint: GradientCheckpointConfig {
        kind as "type": GcType {
            default: GcType::Off, min: None, origin: Epl,
            unsupported: None,
            doc: "Off when empty; 'collection': keep the tensors marked with m.checkpoint(t) and \
                  recompute the other activations in backward; 'auto': keep the values live \
                  across each repeated block's end (else across about sqrt(L) segments).",
        }
        end_taskgraph: i64 {
            default: -1, min: Some(-1), origin: Epl,
            unsupported: None,
            doc: "Auto checkpointing only: keep checkpoints in TaskGraphs with index <= this (-1 = \
                  all).",
        }
        check_gradients: bool {
            default: false, min: None, origin: Epl,
            unsupported: None,
            doc: "Build both normal and checkpointed gradients and check they match in count, \
                  shape and op kind.",
        }
    }
    /// ZeRO: sharding optimizer state and gradients across data-parallel replicas.
    zero: ZeroConfig {
        level: ZeroLevel {
            default: ZeroLevel::Off, min: None, origin: Epl,
            unsupported: None,
            doc: "Off when empty; 'v0': shard optimizer states across data-parallel replicas; \
                  'v1': also gradients (reduce-scatter instead of all-reduce); 'v2': also \
                  parameters (each replica keeps its shard; a program all-gathers a parameter \
                  right before its first use in forward and again in backward, and frees it \
                  after its last). All work with accumulation and pipeline stages; they need \
                  more than one replica.",
        }
    }
    /// Offloading weights to host memory.
    offload: OffloadConfig {
        level: OffloadLevel {
            default: OffloadLevel::Off, min: None, origin: Epl,
            unsupported: None,
            doc: "Off when empty; 'v0': keep parameters and optimizer state in host memory and \
                  copy each parameter to the device right before the program that reads it, \
                  freeing it after its last reader (on CPU devices the host pool is accounted \
                  separately).",
        }
    }
    /// Automatic mixed precision.
    amp: AmpConfig {
        level: AmpLevel {
            default: AmpLevel::Off, min: None, origin: Epl,
            unsupported: None,
            doc: "Off when empty; 'o1' (any case): mixed precision by graph rewrite: matmuls \
                  and attention in amp.dtype; layer norm and cross-entropy read 16-bit inputs \
                  and compute in f32; softmax, reductions and embedding lookups in f32; \
                  elementwise ops in 16 bits when an input is; f32 master weights and \
                  optimizer state, parameters cast just in time in forward and again in \
                  backward (no low-precision weight copies kept).",
        }
        debug_log: bool {
            default: false, min: None, origin: Epl,
            unsupported: None,
            doc: "Log every op's precision decision.",
        }
        loss_scale: LossScale {
            default: LossScale::Dynamic, min: None, origin: Epl,
            unsupported: None,
            doc: "fp16 only (bf16 has f32's range): 'dynamic' (start 2^15, x2 after 2000 \
                  finite steps, /2 and skip the step on overflow, floor 1) or a fixed positive \
                  factor (1 warns: small gradients underflow).",
        }
        dtype: AmpDtype {
            default: AmpDtype::Auto, min: None, origin: Weft,
            unsupported: None,
            doc: "Low-precision type AMP computes in: 'bf16' or 'fp16'; unset: 'fp16' when \
                  amp.loss_scale is a number (EPL's O1 is fp16 with that scale), else 'bf16'.",
        }
    }
    /// Optimizer application.
    optimizer: OptimizerSection {
        num_apply_group: usize {
            default: 1, min: Some(1), origin: Epl,
            unsupported: None,
            doc: "Apply gradients in this many sequential groups (balanced by size) to cut peak \
                  temporary memory. weft updates parameters one at a time in place, so only \
                  ZeRO has optimizer temporaries: its all-gather of updated shards then runs per \
                  group (about 1/N of the buffers). Results are identical for any N.",
        }
    }
    /// Device enumeration and placement.
    cluster: ClusterConfig {
        device_place_prefer_intra_node: bool {
            default: true, min: None, origin: Epl,
            unsupported: None,
            doc: "Enumerate devices worker-major so one replica's devices stay inside a node.",
        }
        run_visible_devices: String {
            default: String::new(), min: None, origin: Epl,
            unsupported: None,
            doc: "Visible device list, e.g. '1' or '0,2' (normally set by a scheduler): each \
                  process uses those of its devices, renumbered from 0 (CPU virtual devices; on \
                  cuda set CUDA_VISIBLE_DEVICES instead); empty = all.",
        }
        colocate_split_and_replicate: bool {
            default: false, min: None, origin: Epl,
            unsupported: None,
            doc: "All TaskGraphs share the same devices (layout 'all'); needed for replicate+split \
                  hybrids such as MoE.",
        }
        layout: ClusterLayout {
            default: ClusterLayout::Auto, min: None, origin: Weft,
            unsupported: None,
            doc: "How TaskGraphs map onto devices: 'auto' (split devices evenly), 'all' (one \
                  slot per device, every TaskGraph on each: one stage), 'specific' (the slices \
                  of cluster.specific) or 'aware_row' (cluster.aware_row one-device workers per \
                  slice, workers of a machine adjacent).",
        }
        specific: Vec<serde_json::Value> {
            default: Vec::new(), min: None, origin: Weft,
            unsupported: None,
            doc: "Device slices of cluster.layout='specific', [taskgraph][replica][device], \
                  each device a global id (host-major) or a name such as 'cpu:1'.",
        }
        aware_row: usize {
            default: 0, min: Some(0), origin: Weft,
            unsupported: None,
            doc: "Workers per slice of cluster.layout='aware_row' (EPL's {aware_row: n}); 0 = \
                  unset.",
        }
    }
    /// Gradient communication between replicas.
    communication: CommunicationConfig {
        num_communicators: usize {
            default: 2, min: Some(1), origin: Epl,
            unsupported: None,
            doc: "Communicators per gradient all-reduce pool; fused buckets go round-robin over \
                  them.",
        }
        sparse_as_dense: bool {
            default: true, min: None, origin: Epl,
            unsupported: None,
            doc: "Communicate embedding (row-slice) gradients densely. weft's default is true \
                  (EPL's is false): its embedding gradients are dense tensors, and the sparse \
                  all-gather path (false) is refused under data parallelism, never ignored.",
        }
        max_splits: usize {
            default: 5, min: Some(1), origin: Epl,
            unsupported: None,
            doc: "Maximum number of fusion buckets for the gradient all-reduce.",
        }
        fp16: bool {
            default: false, min: None, origin: Epl,
            unsupported: None,
            doc: "Cast fp32 payloads to fp16 for the all-reduce.",
        }
        fp16_scale: usize {
            default: 128, min: Some(1), origin: Epl,
            unsupported: None,
            doc: "Multiply before the fp16 cast and divide after.",
        }
        clip_after_allreduce: bool {
            default: true, min: None, origin: Epl,
            unsupported: None,
            doc: "true: all-reduce first, clip the global norm of the reduced gradients (weft's \
                  default: equals single-device training); false (EPL's default): clip each \
                  replica's local gradients, then all-reduce (data parallelism with one device \
                  per replica; refused with pipeline stages).",
        }
        gradients_reduce_method: ReduceMethod {
            default: ReduceMethod::Mean, min: None, origin: Epl,
            unsupported: None,
            doc: "'mean' or 'sum' across replicas; also how micro-batch gradients accumulate (mean \
                  divides by num_micro_batch).",
        }
        bucket_size_mb: usize {
            default: 4, min: Some(1), origin: Weft,
            unsupported: None,
            doc: "Target size of one gradient all-reduce bucket, in MiB (at most \
                  communication.max_splits buckets). Buckets start while backward runs, so \
                  several small ones overlap communication with compute where one big one cannot.",
        }
        timeout_s: usize {
            default: 300, min: Some(1), origin: Weft,
            unsupported: None,
            doc: "Seconds a collective may wait for its peers before failing.",
        }
        insecure_store: bool {
            default: false, min: None, origin: Weft,
            unsupported: None,
            doc: "Run a multi-process job's store off loopback without WEFT_STORE_TOKEN (anyone \
                  reaching MASTER_ADDR could read and change its keys); refused otherwise.",
        }
    }
    /// Input sharding across workers.
    io: IoConfig {
        slicing: bool {
            default: false, min: None, origin: Epl,
            unsupported: None,
            doc: "Divide the shard list of --data among workers (processes) in proportion to \
                  their local replicas, as EPL divides file lists (`weft plan` shows each \
                  worker's shards).",
        }
        unbalanced_io_slicing: bool {
            default: false, min: None, origin: Epl,
            unsupported: None,
            doc: "Allow workers to get unequal file counts.",
        }
        drop_last_files: bool {
            default: false, min: None, origin: Epl,
            unsupported: None,
            doc: "Drop remainder files so every worker gets an equal share.",
        }
    }
    /// Automatic parallelization.
    auto: AutoConfig {
        auto_parallel: bool {
            default: false, min: None, origin: Epl,
            unsupported: None,
            doc: "Partition the model into pipeline.num_stages contiguous stages automatically: \
                  repeated blocks when they divide evenly, else a FLOPs cost model solved exactly \
                  (no strategy scopes allowed).",
        }
        stage_policy: StagePolicyChoice {
            default: StagePolicyChoice::Epl, min: None, origin: Weft,
            unsupported: None,
            doc: "'epl': repeated blocks dealt out evenly when their count divides the stages \
                  (EPL's rule), else the cost model; 'cost_model': always the cost model's \
                  min-max partition (weft plan prints both predictions).",
        }
    }
    /// Tensor parallelism inside split scopes.
    split: SplitConfig {
        sequence_parallel: bool {
            default: false, min: None, origin: Weft,
            unsupported: None,
            doc: "Between the tensor-parallel regions of split scopes, run layer norms, residual \
                  adds and dropout sharded along the sequence, with all-gather / reduce-scatter \
                  in place of all-reduce (Megatron's sequence parallelism).",
        }
    }
    /// How the in-process devices of a plan are driven.
    executor: ExecutorConfig {
        cooperative: bool {
            default: false, min: None, origin: Weft,
            unsupported: None,
            doc: "Run every device on the calling thread, interleaving their pipeline work \
                  (always on the single-threaded WASM build); gradients are reduced after \
                  compute, not overlapped with backward. Not with tensor parallelism, ZeRO or \
                  several processes.",
        }
    }
}

impl AmpConfig {
    /// The low-precision type AMP computes in: `amp.dtype`, or when unset fp16 for a fixed
    /// `amp.loss_scale` (EPL's semantics) and bf16 otherwise.
    pub fn low_dtype(&self) -> AmpDtype {
        match (self.dtype, self.loss_scale) {
            (AmpDtype::Auto, LossScale::Fixed(_)) => AmpDtype::Fp16,
            (AmpDtype::Auto, LossScale::Dynamic) => AmpDtype::Bf16,
            (chosen, _) => chosen,
        }
    }
}

/// Every config key, in table (section) order.
pub fn key_table() -> &'static [KeySpec] {
    KEYS
}

/// The section names, in table order.
pub fn sections() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for spec in KEYS {
        if !out.contains(&spec.section) {
            out.push(spec.section);
        }
    }
    out
}

/// The spec of a dotted snake_case key.
pub fn lookup(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|s| s.key == key)
}

/// The spec of a key, or the "unknown config key ...; did you mean ...?" error.
pub(crate) fn spec_or_err(key: &str) -> Result<&'static KeySpec> {
    lookup(key).ok_or_else(|| unknown_key(key))
}

pub(crate) fn unknown_key(key: &str) -> Error {
    let message = match suggest::nearest(key, KEYS.iter().map(|s| s.key)) {
        Some(near) => format!("unknown config key '{key}'; did you mean '{near}'?"),
        None => format!(
            "unknown config key '{key}'; keys are 'section.attribute' with sections {}",
            sections().join(", ")
        ),
    };
    Error::config(key, message)
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
