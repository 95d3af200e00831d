import { createHash } from 'node:crypto';

/**
 * Readable, unique, and valid both as a directory name and in a container name:
 * `team-a/hello/dev` -> `team-a_hello_dev-1a2b3c4d`.
 */
export function safeWorkloadName(key: string): string {
  const readable = key.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80);
  return `${readable}-${createHash('sha256').update(key).digest('hex').slice(0, 8)}`;
}
