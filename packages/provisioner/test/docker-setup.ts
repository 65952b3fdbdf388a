import { dockerReachable } from '../src/docker-engine.ts';

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
