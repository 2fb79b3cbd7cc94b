import { open, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Makes a file's creation, rename or removal in `dir` durable (POSIX needs the directory fsync'd). */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Replaces `path` atomically and durably: write a temp file, fsync it, rename over, fsync the dir. */
export async function writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, data);
  const fh = await open(tmp, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}
