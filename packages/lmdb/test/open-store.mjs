// Opens a store from JSON options: the conformance suite's worker processes use it.
import { createLmdbStore } from '@idem/lmdb';

export default (options) => createLmdbStore(options);
