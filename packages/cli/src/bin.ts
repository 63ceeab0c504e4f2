#!/usr/bin/env node
// First, before anything is loaded: Node opens its inspector (a debugger on
// 127.0.0.1:9229) on SIGUSR1 unless the process listens to it. idem may hold
// cloud credentials, so it listens; `idem run` forwards it to the command.
process.on('SIGUSR1', () => {});
// A library's stray rejection must not kill idem between claim and finish (that
// would orphan the command and leave the claim in flight): lmdb-js, for one,
// rejects a commit promise nobody holds when the disk is full. The call idem
// awaits fails as well and is reported as usual; IDEM_DEBUG shows the stray one.
process.on('unhandledRejection', (reason) => {
  if (process.env.IDEM_DEBUG) console.error('idem: unhandled rejection:', reason);
});
// Cache V8 code of the modules loaded below across runs: a CLI starts once per
// task, and compiling the store's modules afresh each time is most of its startup.
const { enableCompileCache } = await import('node:module');
enableCompileCache?.();
const { main } = await import('./main.js');
// Exit explicitly: an adapter's client may hold sockets or timers open after close.
process.exit(await main(process.argv.slice(2)));
