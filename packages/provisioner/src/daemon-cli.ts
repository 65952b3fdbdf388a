import { constants } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type DaemonOptions, daemonDrivers, startProvisionerDaemon } from './daemon.ts';
import { defaults } from './defaults.ts';
import { jsonLogger } from './log.ts';

const usage = `Usage: hiatus-provisioner [options]

Runs a Hiatus server's build jobs on this host with the provisioner's drivers.
Flags override the environment.

  --url <url>           the server's base URL                 env HIATUS_URL
  --token <key>         a provisioner key (or an admin's key)  env HIATUS_TOKEN (prefer it: flags show in ps)
  --id <name>           this provisioner's name               default <hostname>-<pid>
  --drivers <a,b>       drivers to serve: ${daemonDrivers.join(', ')} (default all)
  --templates <a,b>     only jobs of these templates          default any
  --tag <name=value>    a tag of this provisioner, repeated   env HIATUS_PROVISIONER_TAGS=host=a,gpu=true
                        for more: it takes untagged templates' jobs and those whose tags are all
                        among its own; without tags, untagged templates' jobs only
  --data-dir <path>     where the drivers keep their state    env HIATUS_PROVISIONER_DIR, default ${defaults.dataDir}
  --concurrency <n>     jobs at once                          default ${defaults.concurrency}
  --heartbeat-ms <ms>   heartbeat interval of a running job   default ${defaults.heartbeatMs}
  --wait-ms <ms>        long-poll wait of one acquire, 0 to ${defaults.maxAcquireWaitMs}  default ${defaults.acquireWaitMs}
  -h, --help            this text

SIGTERM or SIGINT: take no more jobs, let the running ones finish, exit 0. A second one: exit at once.
`;

export type ParsedArgs = { options: DaemonOptions & { url: string } } | { help: true } | { error: string };

/** The daemon's options from its flags and environment, or the one-line reason they are wrong. */
export function parseDaemonArgs(argv: string[], env: NodeJS.ProcessEnv, cwd: string): ParsedArgs {
  let values: Record<string, string | string[] | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        id: { type: 'string' },
        drivers: { type: 'string' },
        templates: { type: 'string' },
        tag: { type: 'string', multiple: true },
        'data-dir': { type: 'string' },
        concurrency: { type: 'string' },
        'heartbeat-ms': { type: 'string' },
        'wait-ms': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    return { error: argumentError(error as Error & { code?: string }) };
  }
  if (values.help) return { help: true };
  const flag = (name: string, variable?: string): string | undefined => {
    const value = values[name] as string | undefined;
    return value ?? (variable && env[variable] !== '' ? env[variable] : undefined);
  };

  try {
    const url = flag('url', 'HIATUS_URL');
    if (!url) throw new ArgumentError('a server is required: --url or HIATUS_URL (such as http://127.0.0.1:8080)');
    if (!isHttpUrl(url)) throw new ArgumentError(`--url must be an http or https URL (got ${JSON.stringify(url)})`);
    const token = flag('token', 'HIATUS_TOKEN');
    if (!token)
      throw new ArgumentError('a key is required: HIATUS_TOKEN or --token (a provisioner key, or an admin full key)');
    const options: DaemonOptions & { url: string } = { url, token };

    const id = flag('id');
    if (id !== undefined) {
      if (!/^\S{1,128}$/.test(id))
        throw new ArgumentError(`--id must be 1 to 128 characters without spaces (got ${JSON.stringify(id)})`);
      options.provisionerId = id;
    }
    const driverList = list('--drivers', flag('drivers'));
    if (driverList) {
      const unknown = driverList.find((d) => !(daemonDrivers as readonly string[]).includes(d));
      if (unknown !== undefined) {
        throw new ArgumentError(
          `unknown driver ${JSON.stringify(unknown)} in --drivers (known: ${daemonDrivers.join(', ')})`,
        );
      }
      options.drivers = driverList;
    }
    const templates = list('--templates', flag('templates'));
    if (templates) {
      const bad = templates.find((name) => !templateName.test(name));
      if (bad !== undefined) {
        throw new ArgumentError(
          `${JSON.stringify(bad)} in --templates is not a template name (lowercase letters, digits, ".", "_" and "-", up to 64)`,
        );
      }
      if (templates.length > maxTemplates) throw new ArgumentError(`--templates may name at most ${maxTemplates}`);
      options.templates = templates;
    }
    const tags = values.tag as string[] | undefined;
    if (tags) options.tags = parseTags('--tag', tags);
    else if (env.HIATUS_PROVISIONER_TAGS) {
      options.tags = parseTags('HIATUS_PROVISIONER_TAGS', env.HIATUS_PROVISIONER_TAGS.split(','));
    }
    options.dataDir = resolve(cwd, flag('data-dir', 'HIATUS_PROVISIONER_DIR') ?? defaults.dataDir);
    options.concurrency = whole('--concurrency', flag('concurrency'), 1, defaults.maxConcurrency);
    options.heartbeatMs = whole('--heartbeat-ms', flag('heartbeat-ms'), 100, 600_000);
    options.waitMs = whole('--wait-ms', flag('wait-ms'), 0, defaults.maxAcquireWaitMs);
    return { options };
  } catch (error) {
    if (error instanceof ArgumentError) return { error: error.message };
    throw error;
  }
}

/** What the server accepts as a template name, and how many a provisioner may ask for. */
const templateName = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const maxTemplates = 100;

/** What the server accepts as a tag name and value, and how many tags a provisioner may have. */
const tagName = /^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}$/;
const tagValue = /^[^\s,=]{1,128}$/;
const maxTags = 20;

/** `['host=a', 'gpu=true']` → `{ host: 'a', gpu: 'true' }`; a name given twice is refused. Throws ArgumentError. */
function parseTags(source: string, pairs: string[]): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const pair of pairs.map((p) => p.trim())) {
    const at = pair.indexOf('=');
    const [name, value] = at < 0 ? [pair, ''] : [pair.slice(0, at), pair.slice(at + 1)];
    if (!tagName.test(name) || !tagValue.test(value)) {
      throw new ArgumentError(
        `${source}: ${JSON.stringify(pair)} is not a tag: name=value, the name of letters, digits, ".", "_", "/" and "-" (up to 64), the value of 1 to 128 characters without spaces, "," or "="`,
      );
    }
    if (Object.hasOwn(tags, name)) throw new ArgumentError(`${source}: the tag ${name} is given twice`);
    tags[name] = value;
  }
  if (Object.keys(tags).length > maxTags) throw new ArgumentError(`${source}: at most ${maxTags} tags`);
  return tags;
}

/** A flag or variable with a wrong value; its message is the line the user sees. */
class ArgumentError extends Error {}

/** Node's messages for bad flags are long; these name the flag and stop. */
function argumentError(error: Error & { code?: string }): string {
  const named = /'([^']+)'/.exec(error.message)?.[1] ?? '';
  switch (error.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${named}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return `option ${named.split(' ')[0]} needs a value`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${JSON.stringify(named)}: every option is a --flag`;
    default:
      return error.message;
  }
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** `a,b` → ['a', 'b'], without duplicates; undefined when the flag is absent. Throws ArgumentError. */
function list(name: string, value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const items = [...new Set(value.split(',').map((item) => item.trim()))];
  if (items.some((item) => item === ''))
    throw new ArgumentError(`${name} must be a comma-separated list of names (got ${JSON.stringify(value)})`);
  return items;
}

/** A whole number within [min, max], or undefined when the flag is absent. Throws ArgumentError. */
function whole(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ArgumentError(`${name} must be a whole number from ${min} to ${max} (got ${JSON.stringify(value)})`);
  }
  return n;
}

/**
 * `hiatus-provisioner`: parses the flags, runs the daemon until SIGTERM or SIGINT (a drain; a
 * second signal exits at once) and returns the exit code: 0 after a drain, 2 for bad arguments.
 */
export async function runCli(argv: string[] = process.argv.slice(2), env = process.env): Promise<number> {
  const parsed = parseDaemonArgs(argv, env, process.cwd());
  if ('help' in parsed) {
    process.stdout.write(usage);
    return 0;
  }
  if ('error' in parsed) {
    process.stderr.write(`hiatus-provisioner: ${parsed.error} (see --help)\n`);
    return 2;
  }
  // The drivers hand their environment down to every agent: the provisioner's key stays here.
  delete process.env.HIATUS_TOKEN;
  const log = jsonLogger();
  const daemon = startProvisionerDaemon({ ...parsed.options, log });
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      log.warn('second signal: exiting at once', { signal });
      process.exit(128 + constants.signals[signal]);
    }
    log.info('signal received: draining (a second one exits at once)', { signal });
    void daemon.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  await daemon.done;
  return 0;
}
