import type { App } from '../app.ts';
import type { JobHolder } from '../db/jobs.ts';
import {
  findUnservedJobs,
  forgetUnseenProvisioners,
  listSeenProvisioners,
  recordProvisionerSeen,
  type UnservedJob,
} from '../db/provisioners.ts';
import { defaults } from '../defaults.ts';

/** Notes a provisioner asking for jobs with its tags: who is connected, for `unservedJobs`. */
export async function noteProvisioner(
  app: Pick<App, 'db'>,
  holder: JobHolder,
  tags: Readonly<Record<string, string>>,
): Promise<void> {
  await recordProvisionerSeen(app.db, { name: holder.name, keyId: holder.keyId, tags });
}

/** `gpu=true host=a`, sorted by name. */
function formatTags(tags: Readonly<Record<string, string>>): string {
  return Object.keys(tags)
    .sort()
    .map((name) => `${name}=${tags[name]}`)
    .join(' ');
}

/** A pending job no provisioner seen lately can take, and the sentence that says so. */
export type UnservedJobNotice = UnservedJob & { message: string };

/**
 * The pending jobs of tagged templates that no provisioner seen asking within `seenWithinMs` has
 * every tag for, each once: those in `reported` are left out, and `reported` is kept to the jobs
 * still waiting (a job taken since, or waiting again later, is said again). Provisioners unseen for
 * `provisionerForgetAfterMs` (a day) are forgotten on the way.
 */
export async function unservedJobs(
  app: Pick<App, 'db'>,
  reported: Set<string>,
  seenWithinMs: number = defaults.provisionerSeenWithinMs,
): Promise<UnservedJobNotice[]> {
  await forgetUnseenProvisioners(app.db, defaults.provisionerForgetAfterMs);
  const [jobs, seen] = await Promise.all([
    findUnservedJobs(app.db, seenWithinMs),
    listSeenProvisioners(app.db, seenWithinMs),
  ]);
  const waiting = new Set(jobs.map((job) => job.buildId));
  for (const id of reported) if (!waiting.has(id)) reported.delete(id);
  const connected = seen.map((p) => `${p.name} (${formatTags(p.tags) || 'no tags'})`).join(', ') || 'none';
  const notices: UnservedJobNotice[] = [];
  for (const job of jobs) {
    if (reported.has(job.buildId)) continue;
    reported.add(job.buildId);
    const flags = formatTags(job.tags).replace(/(^| )/g, '$1--tag ');
    const message = `build ${job.buildId} of template ${job.template} waits: no provisioner with tags ${formatTags(job.tags)} is connected (connected: ${connected}); start one with ${flags}`;
    notices.push({ ...job, message });
  }
  return notices;
}
