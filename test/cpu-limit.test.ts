import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { workerPlan } from '../src/app/cluster.js';
import { autoWorkerCount, cgroupCpuLimit } from '../src/app/cpu-limit.js';
import { parseConfig } from '../src/config/load.js';

/** A fake root with /proc/self/{cgroup,mountinfo} and the given cgroup files. */
async function fakeRoot(membership: string, mountinfo: string, files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'cpu-limit-'));
  await mkdir(join(root, 'proc/self'), { recursive: true });
  await writeFile(join(root, 'proc/self/cgroup'), membership);
  await writeFile(join(root, 'proc/self/mountinfo'), mountinfo);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), text);
  }
  return root;
}

const V2_MOUNT = '30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n';
const HYBRID_MOUNTS = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
].join('\n');

describe('the cgroup CPU limit', () => {
  it('reads cgroup v2 cpu.max of the process cgroup', async () => {
    const root = await fakeRoot('0::/kubepods/pod1/ctr\n', V2_MOUNT, { 'sys/fs/cgroup/kubepods/pod1/ctr/cpu.max': '150000 100000\n' });
    expect(cgroupCpuLimit(root)).toEqual({ cpus: 1.5, file: join(root, 'sys/fs/cgroup/kubepods/pod1/ctr/cpu.max') });
  });

  it('takes the lowest limit on the way up, where the own cgroup has none (max)', async () => {
    const root = await fakeRoot('0::/kubepods/pod1/ctr\n', V2_MOUNT, {
      'sys/fs/cgroup/kubepods/pod1/ctr/cpu.max': 'max 100000\n',
      'sys/fs/cgroup/kubepods/pod1/cpu.max': '50000 100000\n',
      'sys/fs/cgroup/kubepods/cpu.max': '400000 100000\n',
    });
    expect(cgroupCpuLimit(root)?.cpus).toBe(0.5);
  });

  it('reads the v1 cpu controller on a hybrid host (cfs quota over period), not the cpu-less v2 hierarchy', async () => {
    const root = await fakeRoot('12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/docker/abc\n', HYBRID_MOUNTS, {
      'sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '-1\n',
      'sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n',
      'sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us': '200000\n',
      'sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_period_us': '100000\n',
      'sys/fs/cgroup/unified/docker/abc/cpu.max': '10000 100000\n',
    });
    expect(cgroupCpuLimit(root)).toEqual({ cpus: 2, file: join(root, 'sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us') });
  });

  it('maps the cgroup path through a mount of a sub-tree (a cgroup namespace), and unescapes mount paths', async () => {
    const root = await fakeRoot('0::/kubepods/pod1/ctr\n', '30 23 0:26 /kubepods/pod1 /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw\n', {
      'sys/fs/my cgroup/ctr/cpu.max': 'max 100000\n',
      'sys/fs/my cgroup/cpu.max': '250000 100000\n',
    });
    expect(cgroupCpuLimit(root)?.cpus).toBe(2.5);
  });

  it('reports no limit when none is set, the files are missing, or they hold nonsense', async () => {
    expect(cgroupCpuLimit(await fakeRoot('0::/\n', V2_MOUNT, { 'sys/fs/cgroup/cpu.max': 'max 100000\n' }))).toBeUndefined();
    expect(cgroupCpuLimit(await fakeRoot('0::/a\n', V2_MOUNT, {}))).toBeUndefined();
    expect(cgroupCpuLimit(await fakeRoot('0::/a\n', V2_MOUNT, { 'sys/fs/cgroup/a/cpu.max': 'lots\n' }))).toBeUndefined();
    expect(cgroupCpuLimit(await fakeRoot('0::/a\n', V2_MOUNT, { 'sys/fs/cgroup/a/cpu.max': '-5 100000\n' }))).toBeUndefined();
    expect(cgroupCpuLimit(await mkdtemp(join(tmpdir(), 'cpu-limit-empty-')))).toBeUndefined();
  });

  it('reads this machine without throwing: no limit, or a positive one', () => {
    const limit = cgroupCpuLimit();
    if (limit !== undefined) expect(limit.cpus).toBeGreaterThan(0);
  });
});

describe('server.workers: auto', () => {
  it('is the available CPUs, capped by the CPU limit rounded up, and at least 1', () => {
    expect(autoWorkerCount(32, { cpus: 1, file: 'f' })).toBe(1);
    expect(autoWorkerCount(32, { cpus: 1.5, file: 'f' })).toBe(2);
    expect(autoWorkerCount(32, { cpus: 0.25, file: 'f' })).toBe(1);
    expect(autoWorkerCount(2, { cpus: 8, file: 'f' })).toBe(2);
    expect(autoWorkerCount(4, undefined)).toBe(4);
  });

  it('says which limit capped it; a number in the config is used as it is, without reading any', () => {
    const auto = parseConfig('server:\n  workers: auto\n', {});
    const limit = { cpus: 0.5, file: '/sys/fs/cgroup/cpu.max' };
    expect(workerPlan(auto, () => limit)).toEqual({ workers: 1, ...(availableParallelism() > 1 ? { cpuLimit: limit } : {}) });
    expect(workerPlan(auto, () => ({ cpus: 1024, file: 'f' }))).toEqual({ workers: availableParallelism() });
    expect(workerPlan(auto, () => undefined)).toEqual({ workers: availableParallelism() });
    const three = parseConfig('server:\n  workers: 3\n', {});
    expect(workerPlan(three, () => { throw new Error('not read'); })).toEqual({ workers: 3 });
  });
});
