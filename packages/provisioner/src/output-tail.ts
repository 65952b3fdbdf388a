import { open } from 'node:fs/promises';
import { defaults } from './defaults.ts';

/**
 * The last `bytes` a command wrote to `file` after offset `from` (where this run began in an
 * appended log), as text; a leading "…" marks a cut. A missing file reads as empty.
 */
export async function readTail(file: string, from = 0, bytes: number = defaults.outputTailBytes): Promise<string> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'r');
  } catch {
    return '';
  }
  try {
    const { size } = await handle.stat();
    const start = Math.max(from, size - bytes);
    const buffer = Buffer.alloc(Math.max(0, size - start));
    await handle.read(buffer, 0, buffer.length, start);
    return (start > from ? '…' : '') + buffer.toString('utf8');
  } finally {
    await handle.close();
  }
}
