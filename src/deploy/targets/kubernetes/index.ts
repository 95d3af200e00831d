/** The Kubernetes target driver (loaded lazily by targets-registry.ts). See README.md. */
export {
  KubernetesTarget,
  type ApplyManifestsOptions,
  type KubernetesTargetOptions,
} from './kubernetes-target.js';
export { INVENTORY_LABEL, SLOT_LABEL, inventoryOf, resourceNameOf } from './inventory.js';
