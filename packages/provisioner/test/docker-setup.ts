import { dockerLabels } from '../src/docker-driver.ts';
import { dockerClient, dockerReachable } from '../src/docker-engine.ts';

/**
 * Whether the Docker tests can run: the Engine answers. Where it does not they are skipped with a
 * message; under CI=true that is an error, since there they must run (.ci/run installs and starts it).
 */
export async function dockerOrSkip(): Promise<boolean> {
  const engine = await dockerReachable();
  if (engine.reachable) return true;
  const message = `${engine.why} (install docker.io and start dockerd): the Docker tests are skipped`;
  if (process.env.CI === 'true') throw new Error(`${engine.why}: under CI=true the Docker tests must run`);
  console.warn(message);
  return false;
}

const byTask = (taskId: string) => ({ filters: { label: [`${dockerLabels.task}=${taskId}`] } });

/** The containers of a task on the Engine, running or not, found by their label. */
export function containersOf(taskId: string) {
  return dockerClient().listContainers({ all: true, ...byTask(taskId) });
}

/** The volumes of a task on the Engine, found by their label. */
export async function volumesOf(taskId: string) {
  return (await dockerClient().listVolumes(byTask(taskId))).Volumes ?? [];
}

/** Removes whatever these tasks left on the Engine (containers, then volumes), even after a failed test. */
export async function removeTaskLeftovers(taskIds: string[]): Promise<void> {
  for (const taskId of taskIds) {
    for (const c of await containersOf(taskId)) await dockerClient().getContainer(c.Id).remove({ force: true });
    for (const v of await volumesOf(taskId)) await dockerClient().getVolume(v.Name).remove();
  }
}
