#!/usr/bin/env node
/**
 * @fileoverview The `tilejit` executable: runs the command line on the process's stdio.
 */
import { runCli } from './main.js';

process.exitCode = await runCli(process.argv.slice(2), {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  tty: process.stderr.isTTY,
});
