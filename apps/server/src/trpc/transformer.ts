import { type CombinedDataTransformer, TRPCError } from '@trpc/server';
import superjson, { type SuperJSONResult } from 'superjson';
import { defaults } from '../defaults.ts';

/**
 * superjson both ways, with a guard on what callers send: superjson walks its annotations
 * recursively, so a deeply nested or forged `meta` would end in the runtime's own "Maximum call
 * stack size exceeded" (or another of its texts) as a 400. Input is measured first, iteratively,
 * and whatever superjson still refuses is answered in Hiatus's words.
 */
export const transformer: CombinedDataTransformer = {
  input: { serialize: (value) => superjson.serialize(value), deserialize: readInput },
  output: { serialize: (value) => superjson.serialize(value), deserialize: (value) => superjson.deserialize(value) },
};

function readInput(value: unknown): unknown {
  if (nestsDeeperThan(value, defaults.maxInputDepth)) {
    throw new TRPCError({
      code: 'BAD_REQUEST',
      message: `the input nests deeper than ${defaults.maxInputDepth} levels, more than any call takes`,
    });
  }
  try {
    return superjson.deserialize(value as SuperJSONResult);
  } catch (cause) {
    throw new TRPCError({
      code: 'BAD_REQUEST',
      message:
        "the input's superjson annotations (meta) do not describe its values: send what superjson.serialize makes",
      cause,
    });
  }
}

/** Whether arrays and objects nest more than `limit` levels, found without recursion. */
function nestsDeeperThan(value: unknown, limit: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  for (let next = stack.pop(); next; next = stack.pop()) {
    const [node, depth] = next;
    if (node === null || typeof node !== 'object') continue;
    if (depth > limit) return true;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}
