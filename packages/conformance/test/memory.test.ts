// The reference in-memory driver (@idem/core/memory) against the whole suite, in process.
import { createMemoryStore, type MemoryBackend } from '@idem/core/memory';
import { runConformance } from '../src/index.js';

runConformance({
  name: 'memory (reference driver)',
  createStore: (options) => createMemoryStore(options),
  createSharedStores: async (options, count) => {
    const backend: MemoryBackend = new Map();
    return Array.from({ length: count }, () => createMemoryStore({ ...options, backend }));
  },
});
