/**
 * @fileoverview The reference interpreter over the tile IR (debug mode and test oracle).
 */
export { interpret, type InterpArg, type InterpretOptions } from './interpret.js';
