import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const clientDir = path.join(import.meta.dirname, '..');
const manifest = JSON.parse(readFileSync(path.join(clientDir, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
};

describe('@hiatus/client dependency ranges', () => {
  // A range looser than what the SDK is built and tested with promises versions nobody tried
  // (retryLink, say, is not in every 11.x): each starts at the version installed here.
  it.each(Object.entries(manifest.dependencies))('%s starts at the version it is tested with', (name, range) => {
    // Read from the package's folder: not every package exports its package.json.
    const installed = (
      JSON.parse(readFileSync(path.join(clientDir, 'node_modules', name, 'package.json'), 'utf8')) as {
        version: string;
      }
    ).version;
    expect(range).toBe(`^${installed}`);
  });
});
