import { describe, expect, it } from 'vitest';
import { envChanges, envNames, mergeEnv, settingsWithoutEnv } from './templates.ts';

describe("a template's write-only env", () => {
  const stored = { command: 'agent', env: { KEY: 'secret', OLD: 'x' } };

  it('shows readers the settings without env, and the names sorted', () => {
    expect(settingsWithoutEnv(stored)).toEqual({ command: 'agent' });
    expect(envNames({ env: { b: '1', A: '2' } })).toEqual(['A', 'b']);
    expect(envNames({ command: 'agent' })).toEqual([]);
    expect(settingsWithoutEnv({ command: 'agent' })).toEqual({ command: 'agent' });
  });

  it('merges an update by name: a string sets, null removes, a name not given keeps its value', () => {
    expect(mergeEnv(stored, { command: 'next' })).toEqual({ command: 'next', env: { KEY: 'secret', OLD: 'x' } });
    expect(mergeEnv(stored, { command: 'next', env: { OLD: null, NEW: 'n' } })).toEqual({
      command: 'next',
      env: { KEY: 'secret', NEW: 'n' },
    });
    expect(mergeEnv(stored, { command: 'next', env: { KEY: null, OLD: null } })).toEqual({ command: 'next' });
    // What is not an env is left for the driver's schema to refuse.
    expect(mergeEnv(stored, { command: 'next', env: 'KEY=1' })).toEqual({ command: 'next', env: 'KEY=1' });
  });

  it('names what changed, never a value', () => {
    expect(envChanges(stored, { env: { KEY: 'rotated', NEW: 'n' } })).toEqual({
      added: ['NEW'],
      changed: ['KEY'],
      removed: ['OLD'],
    });
    expect(envChanges(stored, stored)).toEqual({ added: [], changed: [], removed: [] });
    expect(envChanges({}, { env: { constructor: 'c', toString: 't' } }).added).toEqual(['constructor', 'toString']);
  });
});
