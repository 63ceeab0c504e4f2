// Opens a tiered store from JSON (a TieredSpec plus store options): the conformance suite's worker processes use it.
import { openTiered, type TieredSpec } from './tiered-stores.ts';

export default ({ spec, ...options }: { spec: TieredSpec }) => openTiered(spec, options);
