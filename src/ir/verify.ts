/**
 * @fileoverview IR invariants (see ir.ts). A failure here is a compiler bug, not a user error,
 * so it throws a plain Error naming the broken rule.
 */
import { isValue, numel, MAX_TILE_ELEMENTS, type Instr, type KernelIR, type Value } from './ir.js';

function operands(v: Value): Value[] {
  switch (v.op) {
    case 'broadcast': case 'reshape': case 'trans': case 'unary': case 'cast': case 'reduce': return [v.src];
    case 'binary': return [v.a, v.b];
    case 'where': return [v.cond, v.a, v.b];
    case 'load': return [v.offsets, ...(v.mask ? [v.mask] : []), ...(v.other ? [v.other] : [])];
    case 'dot': return [v.a, v.b, ...(v.acc ? [v.acc] : [])];
    case 'rand': return [v.seed, v.offsets];
    default: return [];
  }
}

export function verify(ir: KernelIR): void {
  const ids = new Set<number>();
  const fail = (msg: string, v?: { loc: { line: number; column: number } }): never => {
    throw new Error(`IR verification failed in '${ir.name}'${v ? ` at ${v.loc.line}:${v.loc.column}` : ''}: ${msg}`);
  };
  const checkValue = (v: Value): void => {
    if (ids.has(v.id)) fail(`value id ${v.id} defined twice`, v);
    ids.add(v.id);
    if (v.shape.length > 2) fail(`rank ${v.shape.length} > 2`, v);
    for (const d of v.shape) if (!Number.isInteger(d) || d < 1 || (d & (d - 1)) !== 0) fail(`dim ${d} is not a power of two`, v);
    if (numel(v.shape) > MAX_TILE_ELEMENTS) fail('tile too large', v);
    const same = (o: Value): boolean => o.shape.length === v.shape.length && o.shape.every((d, i) => d === v.shape[i]);
    switch (v.op) {
      case 'unary': case 'cast':
        if (!same(v.src)) fail(`${v.op} operand shape differs`, v);
        break;
      case 'binary':
        if (!same(v.a) || !same(v.b)) fail('binary operands must have the result shape (broadcast explicitly)', v);
        if (v.a.dtype !== v.b.dtype) fail(`binary ${v.fn} operand dtypes differ (${v.a.dtype}, ${v.b.dtype})`, v);
        break;
      case 'where':
        if (!same(v.cond) || !same(v.a) || !same(v.b) || v.cond.dtype !== 'bool') fail('where operands must be broadcast and cond bool', v);
        break;
      case 'load':
        if (!same(v.offsets) || v.offsets.dtype !== 'i32') fail('load offsets must be i32 of the result shape', v);
        if (v.mask && (!same(v.mask) || v.mask.dtype !== 'bool')) fail('load mask must be bool of the result shape', v);
        if (v.other && (!same(v.other) || v.other.dtype !== v.dtype)) fail('load other must match the result', v);
        if (ir.params[v.ptr]?.kind !== 'tensor') fail(`load from param ${v.ptr}, not a tensor`, v);
        break;
      case 'dot':
        if (v.a.shape.length !== 2 || v.b.shape.length !== 2 || v.a.shape[1] !== v.b.shape[0]) fail('dot shapes', v);
        if (v.acc && !same(v.acc)) fail('dot acc shape', v);
        break;
      case 'broadcast':
        if (v.src.shape.length > v.shape.length) fail('broadcast to a lower rank', v);
        break;
      case 'reshape':
        if (numel(v.src.shape) !== numel(v.shape)) fail('reshape changes the element count', v);
        break;
      default:
        break;
    }
  };
  const visible: Set<number>[] = [];
  const isVisible = (id: number): boolean => visible.some((s) => s.has(id));
  const block = (instrs: readonly Instr[], extra: Value[]): void => {
    const scope = new Set<number>(extra.map((v) => v.id));
    visible.push(scope);
    for (const ins of instrs) {
      if (isValue(ins)) {
        checkValue(ins);
        for (const o of operands(ins)) if (!isVisible(o.id)) fail(`%${ins.id} (${ins.op}) uses %${o.id} (${o.op}) before it is defined`, ins);
        scope.add(ins.id);
        continue;
      }
      const use = (o: Value, what: string): void => {
        if (!isVisible(o.id)) fail(`${ins.op} uses %${o.id} (${o.op}) as ${what} before it is defined`, ins);
      };
      if (ins.op === 'store') {
        use(ins.offsets, 'offsets');
        use(ins.value, 'value');
        if (ins.mask) use(ins.mask, 'mask');
        if (ins.offsets.shape.join() !== ins.value.shape.join()) fail('store value shape differs from offsets', ins);
      } else if (ins.op === 'for') {
        [ins.start, ins.end, ins.step, ...ins.inits].forEach((o) => use(o, 'a loop operand'));
        [ins.iv, ...ins.carried].forEach((c) => checkValue(c));
        block(ins.body, [ins.iv, ...ins.carried]);
        visible.push(new Set(collect(ins.body)));
        visible.push(new Set([ins.iv.id, ...ins.carried.map((c) => c.id)]));
        ins.yields.forEach((y) => use(y, 'a yield'));
        visible.pop();
        visible.pop();
        ins.results.forEach((r) => { checkValue(r); scope.add(r.id); });
      } else if (ins.op === 'if') {
        use(ins.cond, 'condition');
        block(ins.then, []);
        visible.push(new Set(collect(ins.then)));
        ins.thenYields.forEach((y) => use(y, 'a yield'));
        visible.pop();
        block(ins.else, []);
        visible.push(new Set(collect(ins.else)));
        ins.elseYields.forEach((y) => use(y, 'a yield'));
        visible.pop();
        ins.results.forEach((r) => { checkValue(r); scope.add(r.id); });
      }
    }
    visible.pop();
  };
  block(ir.body, []);
}

function collect(instrs: readonly Instr[]): number[] {
  return instrs.filter(isValue).map((v) => v.id);
}
