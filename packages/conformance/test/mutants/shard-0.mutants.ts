import { registerShard } from './register.js';

registerShard(0, 2);
