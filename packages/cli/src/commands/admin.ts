import { type Command, InvalidArgumentError } from 'commander';
import { date, integer, oneOf } from '../arguments.ts';
import { formatSeconds, formatTime, note, say, sayJson, table, wantsJson } from '../output.ts';
import type { Connection } from '../session.ts';
import { buildReasons } from '../task-view.ts';

/** `hiatus audit` (admins), `hiatus templates ls` and `hiatus templates tag` (admins). */
export function addAdminCommands(program: Command, connection: Connection): void {
  program
    .command('audit')
    .description('the audit log, newest first (admins)')
    .option('--action <action>', 'only this action (task.pause, task.access_denied, …)')
    .option('--actor <userId>', 'only what this user did')
    .option('--resource <id>', 'only records about this task, key, user, …')
    .option('--reason <reason>', `only builds of this reason (${buildReasons.join(', ')})`, oneOf(buildReasons))
    .option('--since <date>', 'from this time on (2026-11-25, 2026-11-25T21:00Z)', date)
    .option('--until <date>', 'before this time', date)
    .option('--limit <n>', 'records per page', integer(1, 500), 100)
    .option('--cursor <cursor>', 'the page after this cursor (printed after a full page)')
    .action(async (options, command: Command) => {
      const { client } = await connection.open();
      const page = await client.audit.list.query({
        action: options.action,
        actorId: options.actor,
        resourceId: options.resource,
        buildReason: options.reason,
        since: options.since,
        until: options.until,
        limit: options.limit,
        cursor: options.cursor,
      });
      if (wantsJson(command)) return sayJson(page);
      say(
        table(
          ['TIME', 'ACTOR', 'ACTION', 'RESOURCE', 'REASON', 'REQUEST'],
          page.items.map((record) => [
            formatTime(record.occurredAt),
            record.actorId ? `${record.actorKind} ${record.actorId}` : record.actorKind,
            record.action,
            record.resourceId ? `${record.resourceType} ${record.resourceId}` : record.resourceType,
            record.buildReason,
            record.requestId,
          ]),
        ),
      );
      if (page.nextCursor) note(`more: hiatus audit --cursor ${page.nextCursor}`);
    });

  const templates = program.command('templates').description('the workspace templates tasks are created from');
  templates
    .command('ls')
    .alias('list')
    .description('the latest version of each template')
    .option('--archived', 'archived templates too')
    .action(async (options, command: Command) => {
      const { client } = await connection.open();
      const items = await client.templates.list.query({ archived: options.archived });
      if (wantsJson(command)) return sayJson(items);
      say(
        table(
          [
            'NAME',
            'VERSION',
            'DRIVER',
            'IDLE TIMEOUT',
            'PARAMETERS',
            'ENV',
            'ON RESUME',
            'PROVISIONER TAGS',
            'ARCHIVED',
            'DESCRIPTION',
          ],
          items.map((template) => [
            template.name,
            template.version,
            template.driver,
            template.idleTimeoutSeconds === null ? 'default' : formatSeconds(template.idleTimeoutSeconds),
            template.parameters.map((p) => p.name).join(', '),
            template.envNames.join(', '), // names only: the server never answers env values
            onResume(template.resume),
            tagList(template.provisionerTags),
            formatTime(template.archivedAt),
            template.description,
          ]),
        ),
      );
    });

  templates
    .command('tag')
    .argument('<template>', 'the template')
    .argument('[tags...]', 'name=value: the provisioner tags its builds need (none: any provisioner)', tag, {})
    .description(
      'save a version of a template whose builds go only to provisioners having all these tags (admins); new tasks use it',
    )
    .addHelpText(
      'after',
      '\nExample:\n  hiatus templates tag claude host=gpu-1   # its builds go to `hiatus-provisioner --tag host=gpu-1`\n  hiatus templates tag claude             # any provisioner',
    )
    .action(async (name: string, tags: Record<string, string>, _options, command: Command) => {
      const { client } = await connection.open();
      const saved = await client.templates.update.mutate({ name, provisionerTags: tags });
      if (wantsJson(command)) return sayJson(saved);
      say(`${saved.name} version ${saved.version}: provisioner tags ${tagList(saved.provisionerTags)}`);
    });
}

/** Collects `name=value` arguments into one object; a name given twice is refused. */
function tag(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError(`${JSON.stringify(value)} is not name=value`);
  const name = value.slice(0, at);
  if (Object.hasOwn(previous, name)) throw new InvalidArgumentError(`the tag ${name} is given twice`);
  return { ...previous, [name]: value.slice(at + 1) };
}

/** `gpu=true host=a`, sorted by name; `-` for none. */
function tagList(tags: Record<string, string>): string {
  const pairs = Object.keys(tags)
    .sort()
    .map((name) => `${name}=${tags[name]}`);
  return pairs.join(' ') || '-';
}

/** A template's `resume` setting in a few words: `own command, recap ≤ 8192 B`; `-` for none. */
function onResume(resume: { command?: string | string[]; message?: boolean; messageMaxBytes?: number } | null): string {
  const parts = [
    ...(resume?.command ? ['own command'] : []),
    ...(resume?.message ? [`recap${resume.messageMaxBytes ? ` ≤ ${resume.messageMaxBytes} B` : ''}`] : []),
  ];
  return parts.join(', ') || '-';
}
