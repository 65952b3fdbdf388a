import { Command } from 'commander';
import { addAccountCommands } from './commands/account.ts';
import { addAdminCommands } from './commands/admin.ts';
import { addTaskCommands } from './commands/tasks.ts';
import { exitCodes } from './exit-codes.ts';
import type { Connection } from './session.ts';

/** The exit statuses, for `hiatus --help`: the same table as the README's. */
const exitStatusHelp = `
Exit status:
  0  done
  ${exitCodes.unexpected}  anything else (a failed build, INTERNAL_SERVER_ERROR)
  ${exitCodes.usage}  usage: a bad flag or argument, or input the server refused (BAD_REQUEST)
  ${exitCodes.not_found}  not found (NOT_FOUND; also another member's task)
  ${exitCodes.conflict}  conflict: the task is not in a status that allows it (CONFLICT)
  ${exitCodes.unauthorized}  unauthorized or forbidden (UNAUTHORIZED, FORBIDDEN, not logged in)
  ${exitCodes.unreachable}  the server is unreachable or unavailable (SERVICE_UNAVAILABLE, TIMEOUT)
  ${exitCodes.rate_limited}  rate limited (TOO_MANY_REQUESTS)
  ${exitCodes.agent_unavailable}  the task's agent is down or answers garbage (PRECONDITION_FAILED)

Environment:
  HIATUS_URL, HIATUS_TOKEN   the server and API key, over what \`hiatus login\` saved
  XDG_CONFIG_HOME            where \`hiatus login\` saves (default ~/.config): hiatus/config.json`;

/**
 * The whole command line; a usage error throws (exitOverride) so that main picks its exit status.
 * Usage errors are reported like every failure: `hiatus: …`, or with `--json` one JSON line.
 */
export function buildProgram(connection: Connection, version: string, json: boolean): Command {
  const program = new Command('hiatus')
    .description('Pause and resume AI agents’ tasks, and read their logs while they sleep.')
    .version(version)
    .option('--json', 'print JSON for scripts (documented shapes) instead of tables')
    .configureOutput({
      outputError: (text, write) => {
        const message = text.trim().replace(/^error: /, '');
        const usage = exitCodes.usage;
        write(
          json
            ? `${JSON.stringify({ error: { kind: 'usage', exitCode: usage, code: null, message } })}\n`
            : `hiatus: ${message}\n`,
        );
      },
    })
    .showHelpAfterError(!json && '(add --help for usage)')
    .exitOverride()
    .addHelpText('after', exitStatusHelp);
  addAccountCommands(program, connection);
  addTaskCommands(program, connection);
  addAdminCommands(program, connection);
  return program;
}
