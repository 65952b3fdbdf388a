import { createInterface } from 'node:readline/promises';
import { Writable } from 'node:stream';

/**
 * Asks a question on the terminal (the question on stderr, the answer from stdin). With `hidden`,
 * what is typed is not echoed: for an API key.
 */
export async function ask(question: string, options: { hidden?: boolean } = {}): Promise<string> {
  let muted = false;
  // readline echoes through its output: a stream that drops the echo while the answer is typed.
  const output = new Writable({
    write(chunk, encoding, done) {
      if (!muted) process.stderr.write(chunk, encoding);
      done();
    },
  });
  const reader = createInterface({ input: process.stdin, output, terminal: true });
  try {
    const answer = reader.question(question);
    muted = options.hidden === true;
    const text = await answer;
    if (options.hidden) process.stderr.write('\n');
    return text.trim();
  } finally {
    reader.close();
  }
}

/** All of stdin, trimmed: for a key or a message piped in. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').trim();
}
