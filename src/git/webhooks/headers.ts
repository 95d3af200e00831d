/** Request headers as Node gives them (lower-case names), or as a caller spells them. */
export type WebhookHeaders = Record<string, string | string[] | undefined>;

export type HeaderRead = { value: string } | { missing: true } | { reason: string };

/**
 * One header's value, looked up case-insensitively. A header sent more than once is refused
 * rather than guessed at: a second signature or token is not something a provider sends.
 */
export function readHeader(headers: WebhookHeaders, name: string): HeaderRead {
  const wanted = name.toLowerCase();
  const values: string[] = [];
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== wanted || value === undefined) continue;
    values.push(...(Array.isArray(value) ? value : [value]));
  }
  if (values.length === 0) return { missing: true };
  if (values.length > 1) return { reason: `${name} header was sent ${values.length} times` };
  return { value: (values[0] ?? '').trim() };
}
