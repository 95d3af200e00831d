/** The registry host of an image reference (`docker.io` for short names, as podman and Docker resolve them). */
export function registryOf(image: string): string {
  const first = image.split('/')[0]!;
  const hasRegistry =
    image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  return hasRegistry ? first : 'docker.io';
}
