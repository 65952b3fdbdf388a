import { describe, expect, it } from 'vitest';
import { commandDriver, DriverError, driverFor, drivers, processDriver } from './index.ts';

describe('drivers', () => {
  it('finds a driver by the name a template gives, and names the known ones otherwise', () => {
    expect(driverFor('process')).toBe(processDriver);
    expect(driverFor('command')).toBe(commandDriver);
    expect(Object.keys(drivers)).toEqual(['process', 'command']);
    expect(() => driverFor('toString')).toThrow(DriverError);
    expect(() => driverFor('docker')).toThrow('unknown driver "docker" (known: process, command)');
  });

  it('checks template settings with each driver schema', () => {
    expect(processDriver.settingsSchema.parse({ command: 'agentapi server --port $PORT -- claude' })).toEqual({
      command: 'agentapi server --port $PORT -- claude',
      startTimeoutMs: 30_000,
      stopGraceMs: 5_000,
    });
    expect(commandDriver.settingsSchema.safeParse({ start: 'docker start x' }).success).toBe(false);
  });
});
