import { join } from 'node:path';
import { DriverError } from './driver.ts';

/*
 * Where the drivers keep things under a provisioner's data directory:
 *   workspaces/<taskId>/               a task's working directory, kept across stops, removed on delete
 *   workspaces/<taskId>/.hiatus/agent.log   what the process driver's agent printed
 *   pids/<taskId>.json                 the process group the process driver started for a task
 *   builds/                            a command driver's output while its command runs
 *   conversations/<taskId>.json        a resume's previous conversation (mode 0600), for the workspace
 */

/** Task ids become file names: anything that could climb out of the data directory is refused. */
function fileName(taskId: string): string {
  if (!/^[\w.-]+$/.test(taskId) || taskId === '.' || taskId === '..') {
    throw new DriverError(`task id ${JSON.stringify(taskId)} cannot name a file`);
  }
  return taskId;
}

export function workspaceDir(dataDir: string, taskId: string): string {
  return join(dataDir, 'workspaces', fileName(taskId));
}

export function agentLogPath(dataDir: string, taskId: string): string {
  return join(workspaceDir(dataDir, taskId), '.hiatus', 'agent.log');
}

export function pidDir(dataDir: string): string {
  return join(dataDir, 'pids');
}

export function pidFilePath(dataDir: string, taskId: string): string {
  return join(pidDir(dataDir), `${fileName(taskId)}.json`);
}

export function buildOutputDir(dataDir: string): string {
  return join(dataDir, 'builds');
}

export function conversationDir(dataDir: string): string {
  return join(dataDir, 'conversations');
}

export function conversationFilePath(dataDir: string, taskId: string): string {
  return join(conversationDir(dataDir), `${fileName(taskId)}.json`);
}
