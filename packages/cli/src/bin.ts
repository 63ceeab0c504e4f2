#!/usr/bin/env node
// Cache V8 code of the modules loaded below across runs: a CLI starts once per
// task, and compiling the store's modules afresh each time is most of its startup.
import { enableCompileCache } from 'node:module';

enableCompileCache?.();
const { main } = await import('./main.js');
// Exit explicitly: an adapter's client may hold sockets or timers open after close.
process.exit(await main(process.argv.slice(2)));
