/**
 * weft: EPL-style distributed training for TypeScript.
 *
 * @example
 * import * as weft from 'weft';
 * const model = weft.model(weft.config(), (m) => {
 *   const x = m.input('x', [null, 784]);
 *   const y = m.input('y', [null], 'i32');
 *   return m.losses.softmaxCrossEntropy(m.nn.linear(m.nn.linear(x, 128).relu(), 10), y);
 * });
 * const trainer = await weft.compile(model, { batch: 32, optimizer: weft.optim.adamW({ lr: 1e-3 }) });
 */
export { Config, config, configKeys } from './config.js';
export type { ConfigInput, ConfigKeyInfo, ConfigValue } from './config.js';
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
export type { Init } from './init.js';
export type { Optimizer, AdamOptions, SgdOptions, CommonOptions } from './optim.js';
export type { TokenBatch, TokenLoader, TokenLoaderOptions } from './data.js';
export * as init from './init.js';
export * as optim from './optim.js';
export * as data from './data.js';
