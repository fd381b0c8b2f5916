/**
 * @fileoverview Helpers for templates whose masks vanish when the shapes divide the tiles:
 * `ld`/`st` are `load`/`store` with the mask applied unless EVEN (a constexpr) says no lane can
 * fall outside, in which case the plain unmasked access compiles to straight vector code.
 */

/** load(ptr, offs, mask, other), or load(ptr, offs) when EVEN. */
export const LD = `function ld(ptr, offs, mask, other, EVEN) {
  if (EVEN) { return load(ptr, offs); }
  return load(ptr, offs, mask, other);
}`;

/** store(ptr, offs, value, mask), or store(ptr, offs, value) when EVEN. */
export const ST = `function st(ptr, offs, value, mask, EVEN) {
  if (EVEN) { store(ptr, offs, value); } else { store(ptr, offs, value, mask); }
}`;

/** where(mask, a, b), or a when EVEN (no lane is masked). */
export const WH = `function wh(mask, a, b, EVEN) {
  if (EVEN) { return a; }
  return where(mask, a, b);
}`;

/** All three, for a template's `helpers`. */
export const MASKED_HELPERS = { ld: LD, st: ST, wh: WH } as const;
