import { createHmac, randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { defineStep, type StepContext } from './step.js';

/**
 * POSTs a JSON message about the run to a webhook (chat, incident tool, custom receiver),
 * signed like GitHub's webhooks when a secret is given: `X-Valve-Signature-256: sha256=<hex>`,
 * the HMAC-SHA256 of the exact body bytes. Server errors, 429 and network failures are retried
 * with backoff; other answers are final. Redirects are not followed (a redirected POST would
 * lose its body or its signature's meaning).
 */

export interface NotifyPolicy {
  /** Waits before each retry; the number of retries is its length. */
  retryDelaysMs: readonly number[];
  /** Each attempt's own time limit. */
  attemptTimeoutMs: number;
  /** How to wait; tests pass one that records the delays instead. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const defaultNotifyPolicy: NotifyPolicy = {
  retryDelaysMs: [1000, 2000, 4000],
  attemptTimeoutMs: 10_000,
  sleep: (ms, signal) => delay(ms, undefined, { signal }),
};

export const SIGNATURE_HEADER = 'x-valve-signature-256';
const reservedHeaders = new Set([
  'content-type',
  'content-length',
  'host',
  'transfer-encoding',
  'connection',
  SIGNATURE_HEADER,
  'x-valve-delivery',
]);

const headerMap = z
  .string()
  .transform((text, ctx) => {
    try {
      return parseYaml(text) as unknown;
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: `not YAML or JSON: ${(error as Error).message}` });
      return z.NEVER;
    }
  })
  .pipe(
    z.record(
      z
        .string()
        .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'expected an HTTP header name')
        .refine((name) => !reservedHeaders.has(name.toLowerCase()), 'is set by the step'),
      z
        .union([z.string(), z.number()])
        .transform(String)
        .pipe(z.string().regex(/^[^\r\n\0]*$/, 'expected a header value without line breaks')),
      { error: 'expected a map of header names to values' },
    ),
  );

const inputs = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' }),
  message: z.string().optional(),
  status: z.string().max(100).optional(),
  headers: headerMap.optional(),
  secret: z.string().min(1).optional(),
  when: z.enum(['now', 'job-end']).default('now'),
});

type NotifyInputs = z.infer<typeof inputs>;

export function createNotifyStep(policy: NotifyPolicy = defaultNotifyPolicy) {
  return defineStep({
    name: 'notify',
    description: 'POST a signed JSON message about the run to a webhook, with retries.',
    inputs,
    async run(context, inputs) {
      if (inputs.when === 'job-end') {
        context.addPostStep(`Notify ${new URL(inputs.url).origin}`, async (job) => {
          // The job's signal is aborted when it was cancelled or timed out, which is exactly
          // when the message matters: the attempts' own time limits bound it instead.
          const unbounded = new AbortController().signal;
          await deliver(context, inputs, inputs.status ?? job.status, policy, unbounded);
        });
        return { 'status-code': '' };
      }
      // A step runs only while every step before it succeeded.
      const code = await deliver(
        context,
        inputs,
        inputs.status ?? 'success',
        policy,
        context.signal,
      );
      return { 'status-code': String(code) };
    },
  });
}

export const notifyStep = createNotifyStep();

/** The JSON body receivers get. */
export function notificationBody(context: StepContext, status: string, message?: string) {
  const { run } = context;
  return {
    app: run.app,
    team: run.team,
    run: { id: run.id, number: run.number, workflow: run.workflow, job: run.jobKey },
    commit: run.commit,
    ref: run.ref,
    actor: run.actor,
    status,
    message: message ?? `${run.team}/${run.app} run #${run.number} (${run.workflow}): ${status}`,
  };
}

async function deliver(
  context: StepContext,
  inputs: NotifyInputs,
  status: string,
  policy: NotifyPolicy,
  signal: AbortSignal,
): Promise<number> {
  const body = JSON.stringify(notificationBody(context, status, inputs.message));
  const headers: Record<string, string> = {
    ...inputs.headers,
    'content-type': 'application/json',
    'user-agent': 'Valve-Notify/1',
    // The same id on every attempt, so a receiver can drop duplicates.
    'x-valve-delivery': randomUUID(),
  };
  if (inputs.secret) {
    headers[SIGNATURE_HEADER] =
      `sha256=${createHmac('sha256', inputs.secret).update(body).digest('hex')}`;
  }
  // The URL's path and query may hold a token (chat webhooks): only the origin is logged.
  const target = new URL(inputs.url).origin;
  const attempts = policy.retryDelaysMs.length + 1;
  let lastProblem = '';
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) await policy.sleep(policy.retryDelaysMs[attempt - 2]!, signal);
    const result = await post(inputs.url, headers, body, signal, policy.attemptTimeoutMs);
    if (result.ok) {
      context.log(`notified ${target}: ${result.status} (${status})`);
      return result.status;
    }
    lastProblem = result.problem;
    if (!result.retry) break;
    context.log(`notify ${target}: attempt ${attempt} of ${attempts} failed: ${lastProblem}`);
  }
  throw new Error(`notify ${target} failed: ${lastProblem}`);
}

type Attempt =
  { ok: true; status: number } | { ok: false; retry: boolean; problem: string; status?: number };

async function post(
  url: string,
  headers: Record<string, string>,
  body: string,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<Attempt> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers,
      body,
      redirect: 'manual',
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
    });
  } catch (error) {
    signal.throwIfAborted();
    const cause = (error as Error & { cause?: Error }).cause;
    const reason =
      (error as Error).name === 'TimeoutError'
        ? `no answer within ${timeoutMs / 1000} s`
        : (cause?.message ?? (error as Error).message);
    return { ok: false, retry: true, problem: reason };
  }
  const excerpt = (await response.text().catch(() => '')).slice(0, 200).replace(/\s+/g, ' ');
  if (response.status >= 200 && response.status < 300) return { ok: true, status: response.status };
  const problem = `HTTP ${response.status}${excerpt ? `: ${excerpt}` : ''}`;
  if (response.status >= 300 && response.status < 400) {
    return {
      ok: false,
      retry: false,
      status: response.status,
      problem: `${problem} (redirects are not followed)`,
    };
  }
  const retry = response.status >= 500 || response.status === 429;
  return { ok: false, retry, status: response.status, problem };
}
