import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceSpec } from '../executor.js';
import { registryOf } from '../image-reference.js';
import { lastLines, type PodmanCli } from './cli.js';

/**
 * Pull policy: an image present in local storage is used as it is (no registry is asked, which
 * is also what makes air-gapped servers work); otherwise it is pulled, with the spec's
 * credentials if it has some. Containers are then created with `--pull=never`.
 */
export async function ensureImage(
  cli: PodmanCli,
  spec: Pick<ServiceSpec, 'image' | 'credentials'>,
  scratch: string,
  log: (line: string) => void,
  signal: AbortSignal,
): Promise<void> {
  if ((await cli.run(['image', 'exists', spec.image])).code === 0) return;
  log(`pulling ${spec.image}`);
  const args = ['pull', '--quiet'];
  // Credentials go in a temporary auth file, not `--creds` on a command line that `ps` shows.
  const authFile = join(scratch, 'auth.json');
  if (spec.credentials) {
    const { username, password } = spec.credentials;
    const auth = Buffer.from(`${username}:${password}`).toString('base64');
    writeFileSync(authFile, JSON.stringify({ auths: { [registryOf(spec.image)]: { auth } } }), {
      mode: 0o600,
    });
    args.push('--authfile', authFile);
  }
  try {
    const result = await cli.run([...args, spec.image], { signal });
    if (result.code !== 0) {
      throw new Error(
        `image ${spec.image} is not in podman's local storage and could not be pulled: ${lastLines(result.stderr)}`,
      );
    }
  } finally {
    rmSync(authFile, { force: true });
  }
}
