import { createRequire } from 'node:module';
import type { Env } from './args.js';
import type { Topic } from './help.js';
import { codeOf, EXIT, exitCodeOf, messageOf, usage } from './errors.js';
import { LOG_FORMATS, out, printError, printHelp, setLogFormat, type LogFormat } from './output.js';

type Command = (argv: string[], env: Env) => Promise<number>;

// Loaded on demand: startup time is the CLI's main cost, and each command needs only its own modules.
const COMMANDS: Record<string, () => Promise<Command>> = {
  run: async () => (await import('./run.js')).runCommand,
  status: async () => (await import('./admin.js')).statusCommand,
  list: async () => (await import('./admin.js')).listCommand,
  check: async () => (await import('./admin.js')).checkCommand,
  sweep: async () => (await import('./admin.js')).sweepCommand,
  release: async () => (await import('./admin.js')).releaseCommand,
  key: async () => (await import('./admin.js')).keyCommand,
  config: async () => (await import('./admin.js')).configCommand,
};

/** This package's version, read from its package.json (one place to bump). */
export const VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string }).version;

/** Runs the CLI and returns its exit code; every error becomes one `idem: CODE: message` line. */
export async function main(argv: string[], env: Env = process.env): Promise<number> {
  try {
    // First, so that every line after it is written the way asked; a bad value is told as text.
    setLogFormat('text');
    setLogFormat(logFormatOf(argv, env));
    const [name, ...rest] = argv;
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      const topic = name === 'help' ? rest[0] : undefined;
      if (topic !== undefined && !(topic in COMMANDS)) throw usage(`unknown command ${JSON.stringify(topic)} (see idem --help)`);
      await printHelp(topic === undefined ? 'main' : (topic as Topic));
      return name === undefined ? EXIT.USAGE : EXIT.OK;
    }
    if (name === '--version' || name === '-V') {
      out(VERSION);
      return EXIT.OK;
    }
    const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (!load) throw usage(`unknown command ${JSON.stringify(name)} (commands: ${Object.keys(COMMANDS).join(', ')})`);
    return await (await load())(rest, env);
  } catch (error) {
    printError(codeOf(error), messageOf(error));
    if (codeOf(error) === 'INTERNAL' && env.IDEM_DEBUG) console.error(error);
    return exitCodeOf(error);
  }
}

/**
 * --log-format (any command; its last one before `--` wins, as parseArgs would), else
 * IDEM_LOG_FORMAT, else text. Read here, ahead of each command's own flags, which only accept it.
 */
function logFormatOf(argv: string[], env: Env): LogFormat {
  let given: string | undefined;
  let from = 'IDEM_LOG_FORMAT';
  const end = argv.indexOf('--');
  const flags = end === -1 ? argv : argv.slice(0, end);
  flags.forEach((arg, i) => {
    if (arg === '--log-format') given = flags[i + 1] ?? '';
    else if (arg.startsWith('--log-format=')) given = arg.slice('--log-format='.length);
    else return;
    from = '--log-format';
  });
  const value = given ?? env.IDEM_LOG_FORMAT ?? 'text';
  if (!(LOG_FORMATS as readonly string[]).includes(value)) throw usage(`${from} must be ${LOG_FORMATS.join(' or ')}, got ${JSON.stringify(value)}`);
  return value as LogFormat;
}
