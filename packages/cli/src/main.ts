import { CommanderError } from 'commander';
import { describeFailure, exitCodes } from './exit-codes.ts';
import { buildProgram } from './program.ts';
import { Connection } from './session.ts';

const version = '0.1.0';

/**
 * Runs the command line and exits with the status of what happened (see `hiatus --help`): a
 * failure is one line on stderr, `hiatus: message`, or with `--json` one JSON object there.
 */
async function main(argv: string[]): Promise<number> {
  const connection = new Connection();
  const json = argv.includes('--json');
  const program = buildProgram(connection, version, json);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version asked for: done. Anything else commander already printed, with the usage hint.
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return 0;
      return exitCodes.usage;
    }
    const failure = describeFailure(error, connection.url);
    if (json) process.stderr.write(`${JSON.stringify({ error: failure })}\n`);
    else process.stderr.write(`hiatus: ${failure.message}${failure.code ? ` (${failure.code})` : ''}\n`);
    return failure.exitCode;
  }
}

// A reader that went away (`hiatus tasks logs … | head`) wants nothing more: end quietly and
// successfully, as the rest of the pipeline did, rather than with a stack trace of EPIPE.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

const status = await main(process.argv);
// Subscriptions and keep-alive sockets would hold the process open: exit once the command is done,
// after what was written reached stdout and stderr (a pipe is written asynchronously).
await Promise.all(
  [process.stdout, process.stderr].map((stream) => new Promise((flushed) => stream.write('', flushed))),
);
process.exit(status);
