#!/usr/bin/env node
// The package ships TypeScript sources: tsx loads them in this very process, so that the
// daemon's pid is this one and SIGTERM, SIGINT and SIGKILL reach it directly.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/daemon-cli.ts');
// Exit explicitly: idle keep-alive connections to the server must not hold the process up.
process.exit(await runCli(process.argv.slice(2)));
