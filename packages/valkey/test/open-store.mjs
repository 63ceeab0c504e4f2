// Opens a store from JSON options: the conformance suite's worker processes use it.
import { createValkeyStore } from '@idem/valkey';

export default (options) => createValkeyStore(options);
