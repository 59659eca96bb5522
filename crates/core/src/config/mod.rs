//! Configuration: EPL's 26 keys (10 sections, EPL's defaults) plus weft's own, typed.
//!
//! Keys are dotted snake_case (`pipeline.num_micro_batch`); camelCase parts are accepted
//! (`pipeline.numMicroBatch`), and each key can come from the environment variable
//! `WEFT_<SECTION>_<KEY>` (or EPL's `EPL_<SECTION>_<KEY>`; unknown `WEFT_*` names are errors).
//! Explicit values win over the environment. Unknown keys, wrong types and invalid values are
//! errors that name the key (and suggest the nearest one). Everything is derived from the single
//! key table in `table.rs`.

mod env;
mod parse;
mod render;
pub(crate) mod suggest;
mod support;
mod table;
mod value;

pub use env::{EnvRead, OTHER_WEFT_VARIABLES};
pub use parse::{flatten_json, value_from_text};
pub use render::docs_markdown;
pub use table::{
    AmpConfig, AutoConfig, ClusterConfig, CommunicationConfig, Config, ExecutorConfig,
    GradientCheckpointConfig, IoConfig, KeySpec, OffloadConfig, OptimizerSection, Origin,
    PipelineConfig, SplitConfig, ZeroConfig, key_table, lookup, sections,
};
pub use value::{
    AmpDtype, AmpLevel, ClusterLayout, ConfigValue, GcType, LossScale, OffloadLevel,
    PipelineStrategy, ReduceMethod, StagePolicyChoice, ValueType, ZeroLevel,
};
