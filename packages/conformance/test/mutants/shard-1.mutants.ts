import { registerShard } from './register.js';

registerShard(1, 2);
