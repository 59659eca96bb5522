/**
 * weft: EPL-style distributed training for TypeScript.
 *
 * @example
 * import * as weft from 'weft-ml';
 * const model = weft.model(weft.config(), (m) => {
 *   const x = m.input('x', [null, 784]);
 *   const y = m.input('y', [null], 'i32');
 *   return m.losses.softmaxCrossEntropy(m.nn.linear(m.nn.linear(x, 128).relu(), 10), y);
 * });
 * const trainer = await weft.compile(model, { batch: 32, optimizer: weft.optim.adamW({ lr: 1e-3 }) });
 */
export { Config, config, configKeys, configValueFromText } from './config.js';
export type { ConfigInput, ConfigKey, ConfigKeyInfo, ConfigKeyName, ConfigKeyTypes, ConfigValue, ConfigValues } from './config.js';
export { MAX_CPU_DEVICES, cpu, cuda, parseDevices } from './devices.js';
export type { Devices } from './devices.js';
export {
  WeftBatchError,
  WeftCollectiveError,
  WeftCheckpointError,
  WeftConfigError,
  WeftDTypeError,
  WeftDataError,
  WeftDeviceError,
  WeftResourceError,
  WeftError,
  WeftInternalError,
  WeftIoError,
  WeftNativeError,
  WeftNonFiniteError,
  WeftShapeError,
  WeftUnsupportedError,
  WeftVerifyError,
} from './errors.js';
export type { WeftErrorCode } from './errors.js';
export { GraphKeys, Model, ModelBuilder, model, replicate, split } from './model.js';
export type {
  BuildFn,
  CollectionSpec,
  DefaultStrategy,
  GraphKey,
  ParameterSpec,
  Strategy,
  StrategyOptions,
  TaskGraphInfo,
  TensorSpec,
} from './model.js';
export { Nn } from './nn.js';
export type { AttentionOptions, BlockOptions, EmbeddingOptions, LayerNormOptions, LinearOptions, MlpOptions } from './nn.js';
export { Losses } from './losses.js';
export { Metrics } from './metrics.js';
export { Tensor } from './tensor.js';
export type { DType, Dim, MatmulOptions, ReduceOptions, Shape } from './tensor.js';
export { Trainer, compile } from './trainer.js';
export { plan } from './cluster.js';
export type { ClusterPlanOptions, ModelShape } from './cluster.js';
export type { GenerateOptions, GenerateResult } from './generate.js';
export type {
  Batch,
  BatchTensor,
  CollectionValue,
  Collections,
  CompileOptions,
  EvalResult,
  InputShape,
  OutputValue,
  Plan,
  ProcessInfo,
  StepResult,
} from './trainer.js';
export type {
  ClusterLayout,
  ClusterMemory,
  ClusterPlanJson,
  ClusterStepTime,
  DeviceMemory,
  MemoryEstimate,
  MemoryMeasured,
  MemoryReport,
  PlanAmp,
  PlanJson,
  PlanTaskGraph,
  Trace,
  TraceEvent,
} from './reports.js';
export type { Init } from './init.js';
export type { Optimizer, AdamOptions, SgdOptions, CommonOptions } from './optim.js';
export type { TokenBatch, TokenLoader, TokenLoaderOptions } from './data.js';
export { gpt, gptBuild, gptParameterCount } from './models/gpt.js';
export type { GptOptions } from './models/gpt.js';
export { mlp, mlpBuild, mlpParameterCount } from './models/mlp.js';
export type { MlpOptions as MlpModelOptions } from './models/mlp.js';
export { WASM_PACKAGE, runtime } from './native.js';
export type { RuntimeInfo } from './native.js';
export * as init from './init.js';
export * as optim from './optim.js';
export * as data from './data.js';
export * as checkpoint from './checkpoint.js';
export * as summary from './summaries.js';
export type { SummaryReduce, SummarySpec, SummaryValue } from './summaries.js';
