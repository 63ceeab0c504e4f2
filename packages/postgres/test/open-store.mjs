// Opens a store from JSON options: the conformance suite's worker processes use it.
import { createPostgresStore } from '@idem/postgres';

export default (options) => createPostgresStore(options);
