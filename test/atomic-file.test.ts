import { mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { commitFile, writeFileAtomic } from '../src/core/atomic-file.js';

describe('writeFileAtomic', () => {
  it('creates the directories, writes the file with its mode, and replaces an old one whole', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-atomic-'));
    const path = join(dir, 'a', 'b', 'file.json');
    await writeFileAtomic(path, 'first', { mode: 0o600 });
    expect(await readFile(path, 'utf8')).toBe('first');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await writeFileAtomic(path, Buffer.from('second'));
    expect(await readFile(path, 'utf8')).toBe('second');
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    // No temp file is left beside it.
    expect(await readdir(join(dir, 'a', 'b'))).toEqual(['file.json']);
  });

  it('leaves the old file and no temp file when the write fails', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-atomic-'));
    const path = join(dir, 'file');
    await writeFileAtomic(path, 'kept');
    // A directory where the file should be: the rename fails after the temp file was written.
    const blocked = join(dir, 'blocked');
    await writeFileAtomic(join(blocked, 'inner'), 'x');
    await expect(writeFileAtomic(blocked, 'new')).rejects.toThrow();
    expect((await readdir(dir)).sort()).toEqual(['blocked', 'file']);
    expect(await readFile(path, 'utf8')).toBe('kept');
  });

  it('commits a file another program wrote', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-atomic-'));
    await writeFile(join(dir, 'out.partial'), 'built');
    await commitFile(join(dir, 'out.partial'), join(dir, 'out'));
    expect(await readdir(dir)).toEqual(['out']);
    expect(await readFile(join(dir, 'out'), 'utf8')).toBe('built');
  });
});
