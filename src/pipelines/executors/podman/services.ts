import { setTimeout as sleep } from 'node:timers/promises';
import { lastLines, type PodmanCli } from './cli.js';

interface InspectedContainer {
  State: {
    Status: string;
    ExitCode: number;
    Health?: { Status: string; Log?: { Output: string }[] };
  };
  Config: { Healthcheck?: { Test: string[]; Interval?: number } | null };
}

/**
 * Waits until a service container runs and, when it has a health check (from the image or
 * `--health-cmd`), until that check passes, as GitHub Actions waits for services. Podman runs
 * health checks from systemd timers, which servers without systemd do not have, so Valve runs
 * each check itself (`podman healthcheck run`) at the check's interval; podman still applies
 * the retries and start period to decide `unhealthy`.
 */
export async function waitForService(
  cli: PodmanCli,
  container: string,
  label: string,
  log: (line: string) => void,
  signal: AbortSignal,
): Promise<void> {
  for (;;) {
    signal.throwIfAborted();
    const [info] = JSON.parse(
      await cli.check(['inspect', '--format', 'json', container]),
    ) as InspectedContainer[];
    if (!info) throw new Error(`service ${label}: container ${container} disappeared`);
    if (info.State.Status !== 'running') {
      if (info.State.Status === 'created' || info.State.Status === 'initialized') {
        await sleep(200, undefined, { signal });
        continue;
      }
      const logs = await cli.run(['logs', '--tail', '20', container]);
      throw new Error(
        `service ${label} stopped (${info.State.Status}, exit code ${info.State.ExitCode}): ${lastLines(logs.stdout + logs.stderr, 20)}`,
      );
    }
    const check = info.Config.Healthcheck;
    if (!check?.Test?.length || check.Test[0] === 'NONE') {
      log(`service ${label} is running`);
      return;
    }
    const run = await cli.run(['healthcheck', 'run', container], { signal });
    if (run.code === 0) {
      log(`service ${label} is healthy`);
      return;
    }
    const [after] = JSON.parse(
      await cli.check(['inspect', '--format', 'json', container]),
    ) as InspectedContainer[];
    const health = after?.State.Health;
    if (health?.Status === 'unhealthy') {
      const output = health.Log?.at(-1)?.Output?.trim();
      throw new Error(`service ${label} is unhealthy${output ? `: ${output}` : ''}`);
    }
    const intervalMs = (check.Interval ?? 30e9) / 1e6;
    log(
      `service ${label}: waiting for its health check (every ${Math.round(intervalMs / 1000)} s)`,
    );
    await sleep(Math.max(intervalMs, 100), undefined, { signal });
  }
}
