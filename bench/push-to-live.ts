/**
 * Push-to-live for the sample app on the embedded default (local target): from `git push`
 * returning to the new version answering at the environment's URL. Printed beside the time the
 * pipeline's own commands took (its `run` steps, from the run's step timings) and beside the
 * real alternative on this machine: the same commands run by hand in a shell (npm test, then
 * starting the app and waiting until it answers). The difference is Valve's overhead.
 *
 *   npm run bench:push -- [iterations=5]
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  api,
  cloneUrl,
  git,
  signup,
  startValve,
  waitFor,
  waitForRun,
} from '../test/e2e/harness.js';
import type { Run } from './lib/push-measure.js';

const iterations = Number(process.argv[2] ?? 5);
const seconds = (ms: number) => (ms / 1000).toFixed(2);
const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** The same work without Valve: run the tests, start the app, wait until it answers. */
async function byHand(dir: string): Promise<number> {
  const started = performance.now();
  const tests = spawnSync('npm', ['test'], { cwd: dir, encoding: 'utf8' });
  if (tests.status !== 0) throw new Error(tests.stderr);
  const port = await freePort();
  const child = spawn('node', ['server.js'], {
    cwd: dir,
    env: { ...process.env, PORT: String(port) },
    stdio: 'ignore',
  });
  await waitFor(
    'the app started by hand',
    async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok,
    30_000,
    5,
  );
  const elapsed = performance.now() - started;
  child.kill();
  return elapsed;
}

async function main() {
  const valve = await startValve();
  const work = mkdtempSync(join(tmpdir(), 'valve-bench-'));
  try {
    const alice = await signup(valve, 'alice', 'dev');
    await api(valve, alice.token, 'POST', '/api/apps', {
      team: 'dev',
      name: 'hello',
      template: 'node-http',
    });
    const dir = join(work, 'hello');
    git(work, ['clone', '-q', cloneUrl(valve, alice, 'dev/hello'), dir]);
    const results: { total: number; queue: number; commands: number; run: number }[] = [];
    const stepTimes = new Map<string, number[]>();
    const manual: number[] = [];
    let url: string | undefined;
    for (let i = 0; i <= iterations; i++) {
      const version = `bench-${i}`;
      const file = join(dir, 'greeting.js');
      writeFileSync(
        file,
        readFileSync(file, 'utf8').replace(/VERSION = '[^']*'/, `VERSION = '${version}'`),
      );
      git(dir, ['commit', '-qam', version]);
      const pushStarted = performance.now();
      git(dir, ['push', '-q', 'origin', 'main']);
      const pushed = performance.now();
      const pushedAt = Date.now();
      // Poll the environment's address from the moment the push returns (the warm-up push
      // has no address yet: it learns it from the finished run).
      let live = 0;
      const answered = url
        ? waitFor(
            'the new version',
            async () => (await (await fetch(url!)).text()).includes(version),
            120_000,
            5,
          ).then(() => (live = performance.now()))
        : Promise.resolve();
      const run = (await waitForRun(valve, alice, 'dev/hello', i + 1)) as unknown as Run;
      if (run.status !== 'succeeded') throw new Error(`run #${run.number} ${run.status}`);
      await answered;
      if (!url) {
        const envs = await api<{ url: string }[]>(
          valve,
          alice.token,
          'GET',
          '/api/apps/dev/hello/environments',
        );
        url = envs.body[0]!.url;
        live = performance.now();
      }
      if (i === 0) {
        console.log(
          `warm-up push: ${seconds(live - pushed)} s (git push itself ${seconds(pushed - pushStarted)} s)`,
        );
        continue;
      }
      const steps = run.jobs.flatMap((j) => j.steps);
      const commandSteps = steps.filter((s) => s.kind === 'run');
      for (const step of steps) {
        const list = stepTimes.get(step.name) ?? [];
        list.push(Date.parse(step.finishedAt!) - Date.parse(step.startedAt!));
        stepTimes.set(step.name, list);
      }
      const commands = commandSteps.reduce(
        (sum, s) => sum + (Date.parse(s.finishedAt!) - Date.parse(s.startedAt!)),
        0,
      );
      results.push({
        total: live - pushed,
        queue: Date.parse(run.startedAt) - pushedAt,
        commands,
        run: Date.parse(run.finishedAt) - Date.parse(run.startedAt),
      });
      manual.push(await byHand(dir));
    }
    const total = median(results.map((r) => r.total));
    const commands = median(results.map((r) => r.commands));
    const hand = median(manual);
    console.log(`\npush-to-live, sample app on the local target, ${iterations} pushes (medians):`);
    console.log(`  git push returned -> new version answers: ${seconds(total)} s`);
    console.log(
      `  push -> run started:                      ${seconds(median(results.map((r) => r.queue)))} s`,
    );
    console.log(
      `  run duration:                             ${seconds(median(results.map((r) => r.run)))} s`,
    );
    console.log(`  the pipeline's own commands (run steps):  ${seconds(commands)} s`);
    console.log(
      `  Valve's overhead (total - commands):      ${seconds(total - commands)} s (${((1 - commands / total) * 100).toFixed(0)}% of the total)`,
    );
    for (const [name, times] of stepTimes) {
      console.log(`    step ${name.padEnd(36)} ${seconds(median(times))} s`);
    }
    console.log(`  same commands by hand (test, start, wait): ${seconds(hand)} s`);
    console.log(`  ratio Valve / by hand:                    ${(total / hand).toFixed(2)}x`);
  } finally {
    await valve.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
