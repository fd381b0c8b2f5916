/**
 * @fileoverview The IR as readable text (`k.ir(...)`, `tilejit inspect --ir`): one instruction
 * per line, %ids, types as dtype[shape], nested blocks indented.
 */
import { isValue, type Instr, type KernelIR, type Value } from './ir.js';

const ty = (v: Value): string => `${v.dtype}${v.shape.length ? `[${v.shape.join(',')}]` : ''}`;
const r = (v: Value): string => `%${v.id}`;

function valueText(v: Value): string {
  switch (v.op) {
    case 'const': return `const ${v.value}`;
    case 'arg': return `arg ${v.index}${v.divisibility ? ` (divisible by ${v.divisibility})` : ''}`;
    case 'programId': case 'numPrograms': return `${v.op} ${v.axis}`;
    case 'arange': return `arange ${v.start}`;
    case 'broadcast': case 'reshape': case 'trans': case 'cast': return `${v.op} ${r(v.src)}`;
    case 'unary': return `${v.fn} ${r(v.src)}`;
    case 'binary': return `${v.fn} ${r(v.a)}, ${r(v.b)}`;
    case 'where': return `where ${r(v.cond)}, ${r(v.a)}, ${r(v.b)}`;
    case 'load': return `load p${v.ptr}[${r(v.offsets)}]${v.mask ? ` mask ${r(v.mask)}` : ''}${v.other ? ` other ${r(v.other)}` : ''}`;
    case 'dot': return `dot ${r(v.a)}, ${r(v.b)}${v.acc ? ` + ${r(v.acc)}` : ''}`;
    case 'reduce': return `${v.fn} ${r(v.src)} axis ${v.axis}${v.skipNan ? ' skipnan' : ''}`;
    case 'rand': return `rand ${r(v.seed)}, ${r(v.offsets)}`;
    default: return v.op;
  }
}

function block(instrs: readonly Instr[], indent: string, out: string[]): void {
  for (const ins of instrs) {
    if (isValue(ins)) {
      out.push(`${indent}${r(ins)}: ${ty(ins)} = ${valueText(ins)}`);
    } else if (ins.op === 'store') {
      out.push(`${indent}store p${ins.ptr}[${r(ins.offsets)}] = ${r(ins.value)}${ins.mask ? ` mask ${r(ins.mask)}` : ''}`);
    } else if (ins.op === 'return') {
      out.push(`${indent}return`);
    } else if (ins.op === 'for') {
      const carried = ins.carried.map((c, i) => `${r(c)}: ${ty(c)} = ${r(ins.inits[i]!)}`).join(', ');
      out.push(`${indent}for ${r(ins.iv)} = ${r(ins.start)}; ${ins.descending ? '>' : '<'} ${r(ins.end)}; += ${r(ins.step)}${carried ? ` carry (${carried})` : ''} {`);
      block(ins.body, `${indent}  `, out);
      if (ins.yields.length) out.push(`${indent}  yield ${ins.yields.map(r).join(', ')}`);
      out.push(`${indent}}${ins.results.length ? ` -> ${ins.results.map(r).join(', ')}` : ''}`);
    } else {
      out.push(`${indent}if ${r(ins.cond)} {`);
      block(ins.then, `${indent}  `, out);
      if (ins.thenYields.length) out.push(`${indent}  yield ${ins.thenYields.map(r).join(', ')}`);
      out.push(`${indent}} else {`);
      block(ins.else, `${indent}  `, out);
      if (ins.elseYields.length) out.push(`${indent}  yield ${ins.elseYields.map(r).join(', ')}`);
      out.push(`${indent}}${ins.results.length ? ` -> ${ins.results.map(r).join(', ')}` : ''}`);
    }
  }
}

export function printIR(ir: KernelIR): string {
  const params = ir.params.map((p, i) => `p${i} ${p.name}: ${p.kind === 'tensor' ? `*${p.dtype}` : p.dtype}`).join(', ');
  const out = [`kernel ${ir.name}(${params}) {`];
  block(ir.body, '  ', out);
  out.push('}');
  return out.join('\n');
}
