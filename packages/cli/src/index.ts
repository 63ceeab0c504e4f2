// Programmatic entry: the same as the `idem` binary, without exiting the process.
export { main, VERSION } from './main.js';
export { parseStoreUrl, DEFAULT_STORE, type StoreSpec } from './store-url.js';
export { CliError, EXIT, type CliErrorCode } from './errors.js';
// The report `idem run --json` prints; its vocabulary and builder live in the light @idem/core/report.
export type { RunReport, RunStatus } from '@idem/core/report';
// The project config file (idem.toml), for embedders: the same settings and precedence as the CLI.
export {
  loadIdemConfig,
  findConfigFile,
  CONFIG_FILE,
  type IdemConfig,
  type ConfigFlags,
  type ConfigSource,
  type LoadConfigOptions,
  type Setting,
  type DedupOn,
  type OnInFlight,
} from './config.js';
