/**
 * The JSON reports of a compiled {@link Trainer}, typed as the core writes them
 * (`session/plan.rs`: `plan_json`, `memory_json`; `exec/memory.rs`; `session/trace.rs`). The
 * trainer spec checks that these keys are exactly the ones the core emits.
 */
import type { ConfigValues } from './config.js';

/** Bytes per category, as `weft plan` predicts them for one device. */
export interface MemoryEstimate {
  readonly params: number;
  readonly grads: number;
  readonly optimizer_state: number;
  readonly activations: number;
  /** Host memory (offloaded parameters), outside the device's total. */
  readonly host: number;
  /** The predicted peak of the device's allocator. */
  readonly total: number;
  /** Parameter bytes kept on the device between uses (ZeRO v2 pieces; none under offload). */
  readonly resident_params: number;
}

/** Peak bytes per category measured by one executor's allocator. */
export interface MemoryMeasured {
  readonly params: number;
  readonly grads: number;
  readonly optimizer_state: number;
  readonly activations: number;
  readonly host: number;
  readonly peak_total: number;
  /** Parameter bytes on the device now: between steps, those it keeps. */
  readonly resident_params: number;
}

/** One device in {@link Trainer.memory}. */
export interface DeviceMemory {
  /** One executor's peaks, or one per stage the device hosts (interleaved pipelines). */
  readonly measured: MemoryMeasured | readonly MemoryMeasured[];
  readonly predicted: MemoryEstimate;
  /** ZeRO's all-gather buffers, outside the allocator's categories; only under ZeRO. */
  readonly zero_gather_bytes?: { readonly measured: number; readonly predicted: number };
}

/** {@link Trainer.memory}: every device by name (`cpu:0`, ...). */
export type MemoryReport = Readonly<Record<string, DeviceMemory>>;

/** One pipeline stage (TaskGraph) of the plan. */
export interface PlanTaskGraph {
  readonly name: string;
  readonly index: number;
  readonly strategy: 'replicate' | 'split';
  /** The device indices of each replica of the stage. */
  readonly devices: readonly (readonly number[])[];
}

/** Mixed precision's decisions; `decisions` only with `amp.debug_log`. */
export interface PlanAmp {
  readonly dtype: string;
  readonly low: number;
  readonly full: number;
  readonly casts: number;
  readonly decisions: readonly string[] | null;
}

/** `trainer.plan.json`, what `weft plan --json` prints. */
export interface PlanJson {
  readonly devices: readonly string[];
  /** EPL's device layout (`auto`, `all`, `specific`, `aware_row`, ...) or `interleaved`. */
  readonly layout: string;
  readonly virtual_stages: number;
  readonly batch: {
    readonly global: number;
    readonly replicas: number;
    readonly micro_batches: number;
    readonly per_micro_batch: number;
  };
  readonly stages: number;
  readonly pipeline_strategy: string;
  readonly taskgraphs: readonly PlanTaskGraph[];
  /** Each device's work items in order (`F0`, `B0`, ...). */
  readonly schedule: Readonly<Record<string, readonly string[]>>;
  readonly memory: Readonly<Record<string, MemoryEstimate>>;
  readonly parameters: number;
  /** The automatic partition's report, with `auto.auto_parallel`. */
  readonly auto_stages: string | null;
  /** With automatic stages: each repeated block's scope (`h.3`) and the stages its ops landed
   * on (one unless a cut falls inside it); empty without repeated blocks. */
  readonly auto_stage_blocks: Readonly<Record<string, readonly number[]>> | null;
  readonly amp: PlanAmp | null;
  readonly warnings: readonly string[];
  readonly executor: 'threads' | 'cooperative';
  readonly config: ConfigValues;
  /** Which environment variable set which key (`pipeline.num_micro_batch from EPL_...`). */
  readonly config_env: readonly string[];
  /** The simulated or real hosts the devices were sliced over (`weft plan --cluster`, processes). */
  readonly cluster: string | null;
}

/** One Chrome trace event: a track's name (`ph: 'M'`) or a span (`ph: 'X'`, microseconds). */
export type TraceEvent =
  | {
      readonly name: 'thread_name';
      readonly ph: 'M';
      readonly pid: number;
      readonly tid: number;
      readonly args: { readonly name: string };
    }
  | {
      readonly name: string;
      /** `forward`, `backward`, `allreduce`, `optimizer`, ... */
      readonly cat: string;
      readonly ph: 'X';
      readonly pid: number;
      readonly tid: number;
      readonly ts: number;
      readonly dur: number;
    };

/** {@link Trainer.trace}: Chrome/Perfetto trace JSON, one track per device. */
export interface Trace {
  readonly traceEvents: readonly TraceEvent[];
  readonly displayTimeUnit: 'ms';
}

/** The layout a cluster plan evaluates (`cluster/layout.rs`: `PlanLayout`), every key optional. */
export interface ClusterLayout {
  readonly tp?: number;
  readonly pp?: number;
  /** Rows of the global batch per optimizer step (default 8). */
  readonly global_batch?: number;
  /** Rows of one micro-batch on one replica (default 1). */
  readonly micro_batch?: number;
  /** Micro-batches per step instead of `micro_batch`. */
  readonly micro_batches?: number | null;
  readonly schedule?: '1f1b' | 'gpipe' | 'interleaved';
  readonly virtual_stages?: number;
  readonly zero?: '' | 'v0' | 'v1' | 'v2';
  readonly recompute?: boolean;
  readonly precision?: 'fp32' | 'bf16' | 'fp16';
  readonly optimizer?: 'adam' | 'adamw' | 'sgd';
}

/** One pipeline rank's predicted peak bytes by category against the kind's capacity. */
export interface ClusterMemory {
  readonly pipeline_rank: number;
  readonly params: number;
  readonly grads: number;
  readonly optimizer_state: number;
  readonly activations: number;
  readonly activations_without_recompute: number;
  readonly activations_with_recompute: number;
  readonly comm_buffers: number;
  readonly total: number;
  readonly capacity: number;
  readonly fits: boolean;
}

/** Where one pipeline rank's simulated step goes, in seconds. */
export interface ClusterStepTime {
  readonly pipeline_rank: number;
  readonly step_s: number;
  readonly compute_s: number;
  readonly exposed_comm_s: number;
  readonly bubble_s: number;
  readonly optimizer_s: number;
}

/** `weft plan --cluster NODESxGPUS:KIND --json` and `weft.plan` (`cluster/plan.rs`). */
export interface ClusterPlanJson {
  readonly cluster: string;
  readonly hardware: string;
  readonly devices: number;
  readonly layout: Required<Omit<ClusterLayout, 'micro_batches'>> & {
    readonly micro_batches: number;
    readonly dp: number;
    readonly stages: number;
  };
  readonly parameters: number;
  readonly memory: readonly ClusterMemory[];
  readonly fits: boolean;
  readonly overflow: readonly string[];
  readonly step: readonly ClusterStepTime[];
  readonly step_s: number;
  readonly critical: ClusterStepTime;
  readonly bubble_fraction: number;
  readonly closed_form_bubble: number;
  readonly tokens_per_s: number;
  readonly model_flops_per_gpu: number;
  readonly mfu: number;
  readonly hardware_flops_per_gpu: number;
}
