// The multi-process race's worker module: plain Node imports it (type stripping), so imports name .ts files.
import { createFileStore, type FileStoreOptions } from '../src/index.ts';

export default (options: FileStoreOptions) => createFileStore(options);
