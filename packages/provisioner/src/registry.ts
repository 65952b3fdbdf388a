import { commandDriver } from './command-driver.ts';
import { dockerDriver } from './docker-driver.ts';
import { type Driver, DriverError } from './driver.ts';
import { processDriver } from './process-driver.ts';

/** Every driver a template can name, by name. */
export const drivers = {
  process: processDriver,
  command: commandDriver,
  docker: dockerDriver,
} as const satisfies Record<string, Driver>;
export type DriverName = keyof typeof drivers;

/** The driver a template names; a DriverError naming the known ones otherwise. */
export function driverFor(name: string): Driver {
  if (Object.hasOwn(drivers, name)) return drivers[name as DriverName];
  throw new DriverError(`unknown driver ${JSON.stringify(name)} (known: ${Object.keys(drivers).join(', ')})`);
}
