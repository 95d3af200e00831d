import { ValveError } from '../../../errors.js';
import type { WorkloadImage } from '../target.js';

/** The two ways an image fails a deploy, as both drivers report them. */

/** The registry (or image source) does not have it: `DEPLOY_IMAGE_UNAVAILABLE`. */
export function imageUnavailable(image: WorkloadImage, why: string): ValveError {
  return new ValveError('DEPLOY_IMAGE_UNAVAILABLE', `image ${image.reference}: ${why}`, {
    image: image.reference,
  });
}

/** It cannot be run (bad manifest, digest mismatch, no platform entry): `INPUT_INVALID`. */
export function imageInvalid(image: WorkloadImage, why: string): ValveError {
  // No code of its own yet: an image that cannot run is bad input to the deploy.
  return new ValveError('INPUT_INVALID', `image ${image.reference}: ${why}`, {
    image: image.reference,
  });
}
