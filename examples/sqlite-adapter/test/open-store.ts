// The multi-process race's worker module: plain Node imports it (type stripping), so imports name .ts files.
import { createSqliteStore, type SqliteStoreOptions } from '../src/index.ts';

export default (options: SqliteStoreOptions) => createSqliteStore(options);
