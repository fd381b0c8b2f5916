import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // A fresh module cache per run: tests never see modules compiled by another build.
    env: { TILEJIT_CACHE_DIR: mkdtempSync(join(tmpdir(), 'tilejit-test-cache-')) },
  },
});
