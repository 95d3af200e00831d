import { STATUS_CODES } from 'node:http';

/** The client's ApiException carries the HTTP status and, for declared responses, the API's Status. */
interface ApiErrorLike {
  code?: number;
  body?: unknown;
}

/** `401 Unauthorized: <the API's message>` for an API error; the message of anything else. */
export function apiErrorMessage(error: unknown): string {
  const { code, body } = (error ?? {}) as ApiErrorLike;
  if (typeof code !== 'number' || !(error instanceof Error) || !/HTTP-Code/.test(error.message))
    return error instanceof Error ? error.message : String(error);
  let detail: string | undefined;
  try {
    const status = (typeof body === 'string' ? JSON.parse(body) : body) as
      { message?: string } | undefined;
    detail = status?.message;
  } catch {
    detail = typeof body === 'string' ? body.slice(0, 200) : undefined;
  }
  return `Kubernetes API: ${code} ${STATUS_CODES[code] ?? ''}${detail ? `: ${detail}` : ''}`.trim();
}

/** Awaits a delete; a 404 (already gone) is success. */
export async function ignoreNotFound(request: Promise<unknown>): Promise<void> {
  try {
    await request;
  } catch (error) {
    if ((error as ApiErrorLike).code !== 404) throw error;
  }
}
