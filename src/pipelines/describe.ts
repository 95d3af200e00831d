import type { z } from 'zod';

/** "with.environment: expected ...; with.image: ..." naming each input that failed. */
export function describeZodErrorPlain(error: z.ZodError, prefix: string): string {
  return error.issues
    .map((issue) => {
      const path = [prefix, ...issue.path.map(String)].join('.');
      return issue.code === 'unrecognized_keys'
        ? `${path}: unknown input ${issue.keys.join(', ')}`
        : `${path}: ${issue.message}`;
    })
    .join('; ');
}
