#!/usr/bin/env node
// The `strata` command. Server roles parse their own flags (packages/runtime config: flags, STRATA_*
// env vars, a YAML --config file); client commands (./commands) use the SDK, @strata/client.
import { readFileSync } from 'node:fs';
import { registerClientCommands } from './commands/index.js';
import { Command } from 'commander';
import { runRole } from './run-role.js';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('strata')
  .description('Strata: a Pulsar-model messaging system. Server roles, a standalone cluster, and client tools.')
  .version(version)
  .showHelpAfterError()
  .addHelpText('after', '\nClient commands (produce, consume, perf, admin) connect to --service-url; without it, to\n' +
    'STRATA_SERVICE_URL if set, else pulsar://localhost:6650. Server roles: --log-level (standalone: warn).');

/** A role command takes its flags raw: the role's config spec parses and validates them. */
function roleCommand(name: string, summary: string, run: (argv: string[]) => Promise<void>): void {
  program
    .command(name)
    .description(`${summary} (strata ${name} --help lists its flags)`)
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[flags...]')
    .action(async (flags: string[]) => run(flags));
}

// Server code is imported only when a server command runs, so client commands start fast.
roleCommand('standalone', 'run a coordinator, a broker and two bookies in one process, for development', async (argv) => {
  const { standaloneBanner, standaloneConfigSpec, startStandalone } = await import('./standalone.js');
  await runRole({ name: 'standalone', summary: 'A one-machine Strata for development and the quick start.', spec: standaloneConfigSpec }, argv, async (config, logger) => {
    const typed = config as Parameters<typeof startStandalone>[0];
    const running = await startStandalone(typed, logger);
    process.stdout.write(standaloneBanner(typed, running));
    return running;
  });
});
const serverRoles = {
  broker: 'serve topics to clients (stateless; data lives on bookies)',
  bookie: 'store ledgers on local disk (append-only, fsynced, fenced)',
  coordinator: 'elect a leader and run cluster duties (bundle assignment, auto-recovery)',
};
for (const [name, summary] of Object.entries(serverRoles)) {
  roleCommand(name, summary, async (argv) => {
    const { roles } = await import('./roles.js');
    const role = roles.find((r) => r.name === name);
    if (!role) throw new Error(`unknown role ${name}`);
    await runRole(role, argv, (config, logger) => role.start(config, { logger }));
  });
}
registerClientCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`strata: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
