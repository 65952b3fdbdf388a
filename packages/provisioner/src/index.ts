export { type CommandSettings, commandDriver, commandSettingsSchema } from './command-driver.ts';
export { defaults } from './defaults.ts';
export * from './driver.ts';
export { type JobOutcome, type JobSources, type JobToPerform, performJob } from './perform.ts';
export { type ProcessSettings, processDriver, processSettingsSchema } from './process-driver.ts';
export { type DriverName, driverFor, drivers } from './registry.ts';
export { parameterVariable } from './task-env.ts';
