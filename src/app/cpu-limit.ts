/**
 * The CPU a container may use: its cgroup's CPU bandwidth limit (a Kubernetes `limits.cpu`, a
 * `docker run --cpus`), read from the kernel's cgroup files. Node's `availableParallelism()`
 * reads only the CPU affinity mask, so inside a container limited to one CPU on a 32-core node
 * it says 32, and `server.workers: auto` would start 32 workers, each with its own memory, to
 * share one CPU's time. Both cgroup versions are read: v2 (`cpu.max`) and v1
 * (`cpu.cfs_quota_us` / `cpu.cfs_period_us`), the limit being the lowest set on the process's
 * cgroup or any cgroup above it in the mounted hierarchy.
 */
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';

/** A CPU bandwidth limit: how many CPUs' worth of time, and the file that sets it. */
export interface CpuLimit {
  readonly cpus: number;
  readonly file: string;
}

/** One line of /proc/self/mountinfo that mounts a cgroup hierarchy. */
interface CgroupMount {
  /** The hierarchy's path that is mounted (`/` unless a cgroup namespace hides the rest). */
  readonly root: string;
  readonly mountPoint: string;
  /** `cgroup2`, or `cgroup` (v1) with the controllers it carries. */
  readonly version: 1 | 2;
  readonly controllers: readonly string[];
}

/** Reads a file, or undefined when it is missing or unreadable (no cgroup, no such controller). */
function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** mountinfo writes space, tab, newline and backslash in paths as octal escapes (`\040`). */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** The cgroup mounts in /proc/self/mountinfo (fields before ` - `, then type, source, super options). */
function cgroupMounts(mountinfo: string): CgroupMount[] {
  const mounts: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const separator = line.indexOf(' - ');
    if (separator < 0) continue;
    const fields = line.slice(0, separator).split(' ');
    const [type, , superOptions = ''] = line.slice(separator + 3).split(' ');
    const root = fields[3];
    const mountPoint = fields[4];
    if (root === undefined || mountPoint === undefined) continue;
    if (type === 'cgroup2') mounts.push({ root: unescapeMountPath(root), mountPoint: unescapeMountPath(mountPoint), version: 2, controllers: [] });
    if (type === 'cgroup') mounts.push({ root: unescapeMountPath(root), mountPoint: unescapeMountPath(mountPoint), version: 1, controllers: superOptions.split(',') });
  }
  return mounts;
}

/**
 * The directories from the process's cgroup up to the top of the mounted hierarchy, nearest
 * first. The cgroup path (from /proc/self/cgroup) is relative to the hierarchy's root; a mount
 * of a sub-tree (`root` other than `/`) shows only the part below it.
 */
function cgroupDirs(mount: CgroupMount, cgroupPath: string, fsRoot: string): string[] {
  const relative = posix.relative(mount.root, cgroupPath);
  const top = posix.join(fsRoot, mount.mountPoint);
  // A path outside the mounted sub-tree (a cgroup namespace boundary): only the mount itself is visible.
  if (relative === '' || relative.startsWith('..')) return [top];
  const dirs: string[] = [];
  for (let at = relative; at !== '.'; at = posix.dirname(at)) dirs.push(posix.join(top, at));
  dirs.push(top);
  return dirs;
}

/** v2: `cpu.max` is `<quota> <period>` in µs, or `max <period>` for no limit. */
function v2Limit(dir: string): CpuLimit | undefined {
  const file = posix.join(dir, 'cpu.max');
  const [quota, period] = (readText(file) ?? '').trim().split(/\s+/);
  return bandwidth(Number(quota), Number(period), file);
}

/** v1: `cpu.cfs_quota_us` (-1 for no limit) over `cpu.cfs_period_us`. */
function v1Limit(dir: string): CpuLimit | undefined {
  const file = posix.join(dir, 'cpu.cfs_quota_us');
  const quota = readText(file);
  const period = readText(posix.join(dir, 'cpu.cfs_period_us'));
  return quota === undefined || period === undefined ? undefined : bandwidth(Number(quota.trim()), Number(period.trim()), file);
}

function bandwidth(quota: number, period: number, file: string): CpuLimit | undefined {
  return Number.isFinite(quota) && Number.isFinite(period) && quota > 0 && period > 0 ? { cpus: quota / period, file } : undefined;
}

/**
 * The CPU bandwidth limit on this process, the lowest on its cgroup and those above it; undefined
 * when none is set or the cgroup files cannot be read (not Linux, no cgroup mounted). On a host
 * with both versions mounted the v1 `cpu` controller, when it is mounted, is the one in force.
 * `fsRoot` prefixes every path read (tests).
 */
export function cgroupCpuLimit(fsRoot = '/'): CpuLimit | undefined {
  const membership = readText(posix.join(fsRoot, 'proc/self/cgroup'));
  const mountinfo = readText(posix.join(fsRoot, 'proc/self/mountinfo'));
  if (membership === undefined || mountinfo === undefined) return undefined;
  const mounts = cgroupMounts(mountinfo);
  // Lines are `<hierarchy id>:<controllers>:<path>`; v2's is `0::<path>`.
  const lines = membership
    .split('\n')
    .map((line) => /^(\d+):([^:]*):(.*)$/.exec(line))
    .filter((match): match is RegExpExecArray => match !== null);
  const v1 = lines.find((match) => match[2]!.split(',').includes('cpu'));
  const v1Mount = mounts.find((mount) => mount.version === 1 && mount.controllers.includes('cpu'));
  const v2 = lines.find((match) => match[1] === '0' && match[2] === '');
  const v2Mount = mounts.find((mount) => mount.version === 2);
  const [mount, path, read] = v1 && v1Mount ? [v1Mount, v1[3]!, v1Limit] : v2 && v2Mount ? [v2Mount, v2[3]!, v2Limit] : [];
  if (!mount || path === undefined || !read) return undefined;
  let lowest: CpuLimit | undefined;
  for (const dir of cgroupDirs(mount, path, fsRoot)) {
    const limit = read(dir);
    if (limit && (!lowest || limit.cpus < lowest.cpus)) lowest = limit;
  }
  return lowest;
}

/**
 * The processes `server.workers: auto` runs: one per CPU the process may run on, and no more
 * than its CPU limit rounded up (a limit of 1.5 CPUs is two workers, of 0.5 one).
 */
export function autoWorkerCount(availableCpus: number, limit: CpuLimit | undefined): number {
  // Quota and period are whole numbers, so a whole number of CPUs divides exactly.
  return Math.max(1, limit ? Math.min(availableCpus, Math.ceil(limit.cpus)) : availableCpus);
}
