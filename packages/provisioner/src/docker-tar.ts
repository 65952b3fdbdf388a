import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';

/**
 * One entry of a tar archive: a directory, or a file whose bytes are given or read from a file on
 * this host (a root filesystem for `docker import` holds the 100 MB node binary: it is streamed).
 */
export type TarEntry = {
  /** Relative, `/`-separated, at most 255 bytes. */
  path: string;
  mode: number;
  uid?: number;
  gid?: number;
} & ({ type: 'dir' } | { type: 'file'; content: Buffer } | { type: 'file'; from: string; size: number });

const block = 512;

/**
 * A ustar archive of `entries`, as Docker reads one (`docker import`, a container's archive
 * upload): written here in a few lines rather than taking a tar package for it. Times are 0, so
 * the same entries always give the same bytes.
 */
export function tarStream(entries: TarEntry[]): Readable {
  return Readable.from(
    (async function* () {
      for (const entry of entries) {
        const size = entry.type === 'dir' ? 0 : 'content' in entry ? entry.content.length : entry.size;
        yield header(entry, size);
        if (entry.type === 'file') {
          if ('content' in entry) yield entry.content;
          else {
            let read = 0;
            for await (const chunk of createReadStream(entry.from)) {
              read += (chunk as Buffer).length;
              yield chunk as Buffer;
            }
            if (read !== size) throw new Error(`${entry.from} changed while it was archived`);
          }
          if (size % block) yield Buffer.alloc(block - (size % block));
        }
      }
      yield Buffer.alloc(2 * block); // the end of the archive
    })(),
    { objectMode: false },
  );
}

function header(entry: TarEntry, size: number): Buffer {
  const buffer = Buffer.alloc(block);
  const path = entry.type === 'dir' && !entry.path.endsWith('/') ? `${entry.path}/` : entry.path;
  // A path over 100 bytes is split at a '/' into the prefix field (up to 155) and the name.
  let name = path;
  let prefix = '';
  if (Buffer.byteLength(path) > 100) {
    const cut = path.lastIndexOf('/', path.length - 2);
    prefix = path.slice(0, cut);
    name = path.slice(cut + 1);
    if (cut < 0 || Buffer.byteLength(prefix) > 155 || Buffer.byteLength(name) > 100) {
      throw new Error(`the path ${path} is too long for a tar archive`);
    }
  }
  const text = (value: string, offset: number, length: number) => buffer.write(value, offset, length, 'utf8');
  const octal = (value: number, offset: number, length: number) =>
    text(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, length);
  text(name, 0, 100);
  octal(entry.mode & 0o7777, 100, 8);
  octal(entry.uid ?? 0, 108, 8);
  octal(entry.gid ?? 0, 116, 8);
  octal(size, 124, 12);
  octal(0, 136, 12); // mtime
  text(entry.type === 'dir' ? '5' : '0', 156, 1);
  text('ustar\u000000', 257, 8);
  text(prefix, 345, 155);
  // The checksum is the bytes' sum with its own field read as spaces.
  buffer.fill(' ', 148, 156);
  let sum = 0;
  for (const byte of buffer) sum += byte;
  text(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  return buffer;
}
