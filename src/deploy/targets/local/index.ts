export { LocalTarget, type LocalTargetOptions } from './local-target.js';
