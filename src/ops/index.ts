/**
 * @fileoverview `ops`: the built-in kernels as functions on tensors (shape checks, config
 * choice, launch). One file per op family.
 */
import { activation, activationBackward, cast, gelu } from './activation.js';
import { attention, attentionBackward, attentionQKV, attentionQKVBackward } from './attention.js';
import { mergeHeads, splitHeads, sum } from './layout.js';
import { huberLoss, l1Loss, mseLoss } from './loss.js';
import { matmul } from './matmul.js';
import { packWeights } from './packed.js';
import { layerNorm, layerNormBackward, rmsNorm, rmsNormBackward } from './norm.js';
import { adamStep, sgdStep, unscaleGrads } from './optim.js';
import { logSoftmax, logSoftmaxBackward, softmax, softmaxBackward } from './softmax.js';

export type { MatmulOptions } from './matmul.js';
export { PackedWeights } from './packed.js';
export type { PackWeightsOptions } from './packed.js';
export type { AttentionOptions, AttentionBackwardOptions, AttentionQKVBackwardOptions, AttentionResult, AttentionGrads } from './attention.js';
export type { Activation, ElementwiseOptions, GeluOptions } from './activation.js';
export type { LossOptions, LossResult, Reduction } from './loss.js';
export type { NormOptions, NormResult, NormBackwardOptions, NormGrads } from './norm.js';
export type { AdamStepOptions, SgdStepOptions } from './optim.js';

/** The built-in ops. */
export const ops = {
  matmul, packWeights,
  attention, attentionBackward, attentionQKV, attentionQKVBackward,
  activation, activationBackward, gelu, cast,
  softmax, logSoftmax, softmaxBackward, logSoftmaxBackward,
  layerNorm, rmsNorm, layerNormBackward, rmsNormBackward,
  mseLoss, l1Loss, huberLoss,
  adamStep, sgdStep, unscaleGrads,
  splitHeads, mergeHeads, sum,
} as const;
