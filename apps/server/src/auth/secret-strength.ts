import { createRequire } from 'node:module';
import type { ZxcvbnFactory } from '@zxcvbn-ts/core';

/** The least an operator-chosen secret (HIATUS_ADMIN_TOKEN, HIATUS_METRICS_TOKEN) must be. */
const secretRules = Object.freeze({ minLength: 32, minDistinctCharacters: 10, minGuessesLog10: 16 });

/**
 * Why an operator-chosen secret is too weak to guard the service, or null when it will do: shorter
 * than 32 characters, with fewer than 10 distinct characters, one short string repeated, with white
 * space (which no Authorization header can carry), or guessable by zxcvbn's estimate (fewer than
 * 10^16 guesses: common passwords, sequences, repeats and keyboard walks put together, however
 * long). A random value passes: `openssl rand -base64 32`.
 */
export function weakSecretReason(secret: string): string | null {
  const advice = 'use a random value, such as the output of `openssl rand -base64 32`';
  if (/\s/.test(secret)) return `must not contain white space; ${advice}`;
  if (secret.length < secretRules.minLength) {
    return `must be at least ${secretRules.minLength} characters (it has ${secret.length}); ${advice}`;
  }
  const distinct = new Set(secret).size;
  if (distinct < secretRules.minDistinctCharacters) {
    return `has too little variety (${distinct} distinct characters, at least ${secretRules.minDistinctCharacters} needed); ${advice}`;
  }
  if (/^(.+)\1+$/s.test(secret)) return `is one short string repeated; ${advice}`;
  const guesses = guessesLog10(secret);
  if (guesses < secretRules.minGuessesLog10) {
    return `is guessable: made of common passwords, sequences or keyboard patterns (about 10^${Math.floor(guesses)} guesses by zxcvbn's estimate, at least 10^${secretRules.minGuessesLog10} needed); ${advice}`;
  }
  return null;
}

// zxcvbn-ts with its language-neutral lists (common passwords, keyboard layouts). Loaded and built
// on first use, synchronously as config validation is: its lists take 0.1-0.3 s to load, which a
// start without a chosen secret need not pay.
let estimator: ZxcvbnFactory | undefined;
function guessesLog10(secret: string): number {
  if (!estimator) {
    const require = createRequire(import.meta.url);
    const { ZxcvbnFactory } = require('@zxcvbn-ts/core') as typeof import('@zxcvbn-ts/core');
    const common = require('@zxcvbn-ts/language-common') as typeof import('@zxcvbn-ts/language-common');
    estimator = new ZxcvbnFactory({ dictionary: common.dictionary, graphs: common.adjacencyGraphs });
  }
  return estimator.check(secret).guessesLog10;
}
