import { describe, expect, it } from 'vitest';
import { commandDriver, DriverError, dockerDriver, driverFor, drivers, processDriver } from './index.ts';

describe('drivers', () => {
  it('finds a driver by the name a template gives, and names the known ones otherwise', () => {
    expect(driverFor('process')).toBe(processDriver);
    expect(driverFor('command')).toBe(commandDriver);
    expect(driverFor('docker')).toBe(dockerDriver);
    expect(Object.keys(drivers)).toEqual(['process', 'command', 'docker']);
    expect(() => driverFor('toString')).toThrow(DriverError);
    expect(() => driverFor('kubernetes')).toThrow('unknown driver "kubernetes" (known: process, command, docker)');
  });

  it('checks template settings with each driver schema', () => {
    expect(processDriver.settingsSchema.parse({ command: 'agentapi server --port $PORT -- claude' })).toEqual({
      command: 'agentapi server --port $PORT -- claude',
      startTimeoutMs: 30_000,
      stopGraceMs: 5_000,
    });
    expect(commandDriver.settingsSchema.safeParse({ start: 'docker start x' }).success).toBe(false);
    expect(dockerDriver.settingsSchema.parse({ image: 'agent:1' })).toMatchObject({
      image: 'agent:1',
      workspacePath: '/workspace',
      port: 3284,
      network: 'none',
      reach: 'published',
      stopGraceSeconds: 5,
    });
    expect(dockerDriver.settingsSchema.safeParse({ image: 'agent:1', privileged: true }).success).toBe(false);
  });
});
