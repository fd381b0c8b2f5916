/**
 * @fileoverview The autotuner: configs timed per key bucket, verified first, kept on disk.
 */
export { autotune, TunedKernel, timeLaunch, type AutotuneOptions, type NamedArgs, type PruneContext, type TunableKernel, type TunedLaunchOptions, type TuneConfig, type TuneEvent, type TuneMeta, type TuneReport, type VerifyOptions } from './autotune.js';
export { bucket, configId, keyId, machineSignature, signatureId, type KeyValue, type MachineSignature } from './key.js';
export { TuneStore, TUNE_FORMAT, type ConfigResult, type TuneEntry, type TuneFile } from './store.js';
export { plotTuneReport } from './plot.js';
