import { randomBytes } from 'node:crypto';

/** Short random ids, url-safe, with a readable prefix (`run_x3f...`). */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(9).toString('base64url')}`;
}
