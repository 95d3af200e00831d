import { request } from 'node:http';
import type { ReadinessProbe } from '../target.js';

export interface ProbeSettings {
  path: string;
  periodMs: number;
  timeoutMs: number;
  failureThreshold: number;
}

/** Kubernetes' defaults, so a probe copied from a Deployment means the same here. */
export function probeSettings(probe: ReadinessProbe | undefined): ProbeSettings {
  return {
    path: probe?.path ?? '/',
    periodMs: (probe?.periodSeconds ?? 10) * 1000,
    timeoutMs: (probe?.timeoutSeconds ?? 1) * 1000,
    failureThreshold: probe?.failureThreshold ?? 3,
  };
}

export type ProbeResult = { ok: true } | { ok: false; reason: string };

/** One HTTP GET on a fresh connection; 2xx and 3xx pass. */
export function probeOnce(port: number, path: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: 'GET', agent: false, timeout: timeoutMs },
      (res) => {
        res.resume();
        const status = res.statusCode ?? 0;
        resolve(
          status >= 200 && status < 400
            ? { ok: true }
            : { ok: false, reason: `GET ${path} answered HTTP ${status}` },
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (error: NodeJS.ErrnoException) =>
      resolve({ ok: false, reason: `GET ${path} failed: ${error.code ?? error.message}` }),
    );
    req.end();
  });
}
