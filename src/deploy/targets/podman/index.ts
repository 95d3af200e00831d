export { PodmanTarget, type PodmanTargetOptions } from './podman-target.js';
export type { RegistryAccess } from './images.js';
