/**
 * @fileoverview The kernel-language front end: parse once, specialise per constexpr values.
 */
export { helperSources, parseKernel, type ParamKind, type Signature, type ConstexprValue, type HelperSource, type ParseOptions, type ParsedKernel } from './parse.js';
export { specialize, MAX_UNROLL, type SpecializeInput } from './specialize.js';
