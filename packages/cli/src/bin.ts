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
// NODE_COMPILE_CACHE, when set, names the directory (Node reads it); otherwise the
// user's cache directory, not a shared tmpdir another user may have made first.
const { createRequire, enableCompileCache } = await import('node:module');
try {
  const { env } = process;
  if (env.NODE_COMPILE_CACHE) enableCompileCache?.();
  else {
    const { mkdirSync } = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');
    const base = env.XDG_CACHE_HOME || (env.HOME ? `${env.HOME}/.cache` : '');
    const dir = `${base}/idem/node-compile-cache`;
    // Made here one level at a time: Node's own recursive mkdir never returns on some paths (/proc/x).
    // A directory that cannot be made or written only turns the cache off, never the run.
    const made = (path: string) => {
      try {
        mkdirSync(path, { mode: 0o700 });
        return true;
      } catch (error) {
        return (error as NodeJS.ErrnoException).code === 'EEXIST';
      }
    };
    if (base.startsWith('/') && made(base) && made(`${base}/idem`) && made(dir)) enableCompileCache?.(dir);
  }
} catch (error) {
  if (process.env.IDEM_DEBUG) console.error('idem: compile cache off:', error);
}
const { main } = await import('./main.js');
// Exit explicitly: an adapter's client may hold sockets or timers open after close.
process.exit(await main(process.argv.slice(2)));
