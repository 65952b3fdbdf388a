import { createHiatusClient } from '@hiatus/client';
import { type Command, Option } from 'commander';
import {
  configPath,
  defaultServerUrl,
  readSavedCredentials,
  removeCredentials,
  saveCredentials,
} from '../credentials.ts';
import { CliError } from '../exit-codes.ts';
import { details, formatTime, say, sayJson, wantsJson } from '../output.ts';
import { ask, readStdin } from '../prompt.ts';
import type { Connection } from '../session.ts';

/** `hiatus login`, `hiatus logout`, `hiatus whoami`. */
export function addAccountCommands(program: Command, connection: Connection): void {
  program
    .command('login')
    .description(
      `check a server URL and API key, then save them in ${configPath().replace(process.env.HOME ?? '\0', '~')} (mode 0600)`,
    )
    .addOption(
      new Option('--url <url>', `the server (asked for when on a terminal; default ${defaultServerUrl})`).env(
        'HIATUS_URL',
      ),
    )
    .addOption(
      new Option(
        '--token <key>',
        'the API key (asked for, unseen, on a terminal; read from stdin when piped; - reads stdin)',
      ).env('HIATUS_TOKEN'),
    )
    .addHelpText(
      'after',
      `
The key is checked with the server (the \`me\` call) before it is saved; nothing is saved when it fails.
HIATUS_URL and HIATUS_TOKEN, when set, are used by every command instead of what login saved.

Examples:
  hiatus login                                   asks for both
  hiatus login --url https://hiatus.example.com < key.txt`,
    )
    .action(async (options, command: Command) => {
      const interactive = process.stdin.isTTY === true;
      const url = normaliseUrl(
        options.url ??
          (interactive ? (await ask(`Server URL [${defaultServerUrl}]: `)) || defaultServerUrl : defaultServerUrl),
      );
      let token: string = options.token ?? '';
      if (token === '-' || (!token && !interactive)) token = await readStdin();
      else if (!token) token = await ask('API key: ', { hidden: true });
      if (!token) throw new CliError('usage', 'no API key given');
      connection.url = url;
      const me = await createHiatusClient({ url, token }).me.query();
      const file = configPath();
      await saveCredentials(file, { url, token });
      if (wantsJson(command)) return sayJson({ url, configPath: file, ...me });
      say(`logged in to ${url} as ${me.username} (${me.role}, ${me.scope} key${me.keyName ? ` "${me.keyName}"` : ''})`);
      say(`saved in ${file}`);
    });

  program
    .command('logout')
    .description('forget the saved server URL and API key (the key itself stays valid)')
    .action(async (_options, command: Command) => {
      const file = configPath();
      const removed = await removeCredentials(file);
      if (wantsJson(command)) return sayJson({ removed, configPath: file });
      say(removed ? `logged out: removed ${file}` : `not logged in: no ${file}`);
    });

  program
    .command('whoami')
    .description('whom the API key speaks for, and the server it is sent to')
    .action(async (_options, command: Command) => {
      const { client, url } = await connection.open();
      const me = await client.me.query();
      const saved = await readSavedCredentials(configPath());
      if (wantsJson(command)) return sayJson({ url, ...me });
      say(
        details([
          ['server', url],
          ['user', `${me.username} (${me.userId})`],
          ['role', me.role],
          ['key', `${me.keyName ?? '-'} (${me.keyId}), ${me.scope}${me.taskId ? ` for task ${me.taskId}` : ''}`],
          ['expires', formatTime(me.expiresAt) ?? 'never'],
          ['from', process.env.HIATUS_TOKEN ? 'HIATUS_TOKEN' : saved ? configPath() : '-'],
        ]),
      );
    });
}

/** A base URL without a trailing slash; anything but http(s) is a usage error. */
function normaliseUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError('usage', `not a URL: ${text}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError('usage', `not an http(s) URL: ${text}`);
  return url.toString().replace(/\/+$/, '');
}
