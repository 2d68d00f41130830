/**
 * `server.worker_memory`: which node arguments and environment a worker is started with, and that
 * an operator's own settings (node arguments, NODE_OPTIONS, the environment) are kept. That the
 * primary starts real workers with them: workers.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { workerProcessSettings } from '../src/app/worker-memory.js';

describe('workerProcessSettings', () => {
  it('bounded: adds the V8 flags after the inherited node arguments, and the glibc tunables', () => {
    expect(workerProcessSettings('bounded', ['--enable-source-maps'], {})).toEqual({
      execArgv: ['--enable-source-maps', '--max-semi-space-size=8', '--heap-growing-percent=50'],
      env: { MALLOC_MMAP_THRESHOLD_: '131072', MALLOC_ARENA_MAX: '2' },
    });
  });

  it('bounded: keeps what the operator set, in node arguments or NODE_OPTIONS, in either spelling', () => {
    expect(workerProcessSettings('bounded', ['--max-semi-space-size=32'], { NODE_OPTIONS: '--max_old_space_size=512 --heap_growing_percent=20' }).execArgv).toEqual([
      '--max-semi-space-size=32',
    ]);
    expect(workerProcessSettings('bounded', [], { NODE_OPTIONS: '--heap-growing-percent=80' }).execArgv).toEqual(['--max-semi-space-size=8']);
  });

  it('bounded: leaves a glibc tunable the operator set in the environment', () => {
    expect(workerProcessSettings('bounded', [], { MALLOC_MMAP_THRESHOLD_: '1048576' }).env).toEqual({ MALLOC_ARENA_MAX: '2' });
    expect(workerProcessSettings('bounded', [], { MALLOC_MMAP_THRESHOLD_: '1048576', MALLOC_ARENA_MAX: '8' }).env).toEqual({});
  });

  it('bounded: a flag name that only starts like one of its flags is not taken for it', () => {
    expect(workerProcessSettings('bounded', ['--max-semi-space-size-extra=1'], {}).execArgv).toContain('--max-semi-space-size=8');
  });

  it('node: the inherited node arguments only, nothing added', () => {
    expect(workerProcessSettings('node', ['--inspect=0'], { NODE_OPTIONS: '' })).toEqual({ execArgv: ['--inspect=0'], env: {} });
  });
});
