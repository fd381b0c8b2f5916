/**
 * @fileoverview The `tilejit` command: dispatch, help, and exit statuses (0 done, 1 failed,
 * 2 bad arguments). `runCli` takes its output channels so tests run it in process.
 */
import { UsageError, type CliIO } from './args.js';
import { cache, info, inspect, tune } from './commands.js';

const HELP = `tilejit: JIT tile kernels for WebAssembly SIMD

usage: tilejit <command> [options]

commands:
  info [--json]                     WebAssembly features (SIMD, relaxed SIMD, threads), cache dir and size
  cache clear                       remove compiled modules and tuning results from the cache dir
  inspect <op|file> --wat|--ir      the generated WebAssembly text or the specialised IR
          [--shape ...]             (ops: matmul MxNxK, gelu N, softmax MxN, layernorm MxN, attention NxD; a file is a JS module exporting
                                    inspect = { kernel, options: { grid, ...constexprs }, args: (rt) => [...] })
  bench [--suite NAME]... [--json] [--quick] [--report DIR]
                                    benchmarks; --json prints one BENCH_JSON line per measurement;
                                    --report writes a Markdown summary and SVG charts (speed, roofline) to DIR
  tune <op> [--shape ...] [--threads N] [--warmup MS] [--rep MS] [--json] [--no-cache] [--svg FILE]
                                    time every verified config of an op, show the table (and a chart), keep the winner
                                    (ops: matmul MxNxK, matmul-plain MxNxK (no FMA), gemv NxK, gemv-bt NxK, softmax MxN, layernorm MxN,
                                    attention[-dkv|-dq|-bwd][-causal] NxD: the forward and the backward's passes)
  help, --help                      this text

environment: TILEJIT_CACHE_DIR (cache directory), TILEJIT_NO_RELAXED=1 (no FMA)
`;

const USAGE: Record<string, string> = {
  info: 'tilejit info [--json]',
  cache: 'tilejit cache clear',
  inspect: 'tilejit inspect <op|file> --wat|--ir [--shape ...] (matmul MxNxK, gelu N, softmax/layernorm MxN, attention NxD)',
  bench: 'tilejit bench [--suite NAME]... [--json] [--quick] [--report DIR]',
  tune: 'tilejit tune <op> [--shape ...] [--threads N] [--warmup MS] [--rep MS] [--json] [--no-cache] [--svg FILE] (matmul MxNxK, matmul-plain MxNxK, gemv NxK, gemv-bt NxK, softmax MxN, layernorm MxN, attention[-dkv|-dq|-bwd][-causal] NxD)',
};

/** Run the command line `args` (without node and the script); resolves to the exit status. */
export async function runCli(args: readonly string[], io: CliIO): Promise<number> {
  const [cmd, ...rest] = args;
  try {
    if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
      (cmd === undefined ? io.err : io.out)(HELP);
      return cmd === undefined ? 2 : 0;
    }
    if (rest.includes('--help') || rest.includes('-h')) {
      if (!(cmd in USAGE)) throw new UsageError(`unknown command '${cmd}'`);
      io.out(`usage: ${USAGE[cmd]}\n`);
      return 0;
    }
    switch (cmd) {
      case 'info': return info(rest, io);
      case 'cache': return cache(rest, io);
      case 'inspect': return await inspect(rest, io);
      case 'tune': return await tune(rest, io);
      case 'bench': {
        const at = rest.indexOf('--report');
        const dir = at >= 0 ? rest[at + 1] : undefined;
        if (at >= 0 && (!dir || dir.startsWith('--'))) throw new UsageError('--report needs a directory', 'bench');
        try {
          if (at >= 0) {
            const { runReport } = await import('../../bench/report.js');
            return await runReport([...rest.slice(0, at), ...rest.slice(at + 2), '--out', dir!], io);
          }
          const { runBench } = await import('../../bench/run.js');
          return await runBench(rest, io, 'tilejit bench');
        } catch (err) {
          if ((err as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw err;
          io.err(`tilejit bench: the benchmarks are not available in this install (${(err as Error).message})\n`);
          return 1;
        }
      }
      default: throw new UsageError(`unknown command '${cmd}'`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      const usage = err.command ? USAGE[err.command] : undefined;
      io.err(`tilejit: ${err.message}\n${usage ? `usage: ${usage}` : "run 'tilejit --help' for the commands"}\n`);
      return 2;
    }
    io.err(`tilejit ${cmd}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
