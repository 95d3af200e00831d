import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { FileValidationError } from '../formats/yaml.js';
import { SCOPES } from './expressions/availability.js';
import { jobOrder, parseWorkflow, type Workflow } from './workflow.js';

const known = new Set(['checkout', 'build-image', 'deploy']);
const testdata = join(import.meta.dirname, 'testdata');

function problems(
  text: string,
  file = 'ci.yml',
  knownSteps: ReadonlySet<string> = known,
): string[] {
  try {
    parseWorkflow(text, file, { knownSteps });
  } catch (error) {
    assert.ok(error instanceof FileValidationError, String(error));
    return error.message.split('\n');
  }
  assert.fail('expected the workflow to be rejected');
}

describe('malformed workflows: each problem at its file:line:column', () => {
  // file, the expected `file:line:column: field`, and a fragment of the message.
  const cases: [string, string, string][] = [
    [
      'block-scalar-expression.yml',
      '8:16: jobs.build.steps[0].run',
      '(`vars`) are not supported by Valve',
    ],
    [
      'branches-and-branches-ignore.yml',
      '4:5: on.push.branches-ignore',
      'use either `branches` or `branches-ignore`',
    ],
    [
      'choice-without-options.yml',
      '5:15: on.workflow_dispatch.inputs.level.type',
      'a `choice` input needs `options`',
    ],
    ['cron-macro.yml', '3:13: on.schedule[0].cron', 'macros such as @daily are not supported'],
    ['cron-out-of-range.yml', '3:13: on.schedule[0].cron', 'invalid cron'],
    [
      'duplicate-step-id.yml',
      '7:13: jobs.build.steps[1].id',
      'step id `compile` is already used by steps[0]',
    ],
    ['env-bad-name.yml', '3:3: env.MY-VAR', 'expected an environment variable name'],
    [
      'expression-syntax.yml',
      '6:20: jobs.build.steps[0].run',
      '`github.ref ==`: unexpected end of expression',
    ],
    ['expression-unclosed.yml', '5:19: jobs.build.steps[0].run', '`${{` is never closed with `}}`'],
    [
      'hashfiles-in-job-env.yml',
      '5:17: jobs.build.env.KEY',
      '`hashFiles()` is only available in steps',
    ],
    ['if-partly-wrapped.yml', '4:9: jobs.build.if', 'wrap all of it in one `${{ }}`'],
    [
      'inputs-without-dispatch.yml',
      '5:19: jobs.build.steps[0].run',
      'context `inputs` is only available with an `on.workflow_dispatch` trigger',
    ],
    [
      'invalid-filter-pattern.yml',
      '3:12: on.push.tags[0]',
      'invalid filter pattern: `[` at position 2 is never closed',
    ],
    [
      'matrix-context-without-strategy.yml',
      '5:19: jobs.test.steps[0].run',
      'context `matrix` is only available in a job with `strategy.matrix`',
    ],
    [
      'matrix-empty-variable.yml',
      '6:15: jobs.test.strategy.matrix.node',
      'expected a non-empty list of values',
    ],
    [
      'matrix-exclude-unknown-variable.yml',
      '10:13: jobs.test.strategy.matrix.exclude[0].nodejs',
      'exclude names `nodejs`, which is not a matrix variable (os, node)',
    ],
    ['matrix-too-big.yml', '6:9: jobs.test.strategy.matrix', 'more than 256 combinations'],
    [
      'matrix-unknown-variable.yml',
      '8:22: jobs.test.steps[0].run',
      "`matrix.nod` is not a variable of this job's matrix; did you mean `node`?",
    ],
    ['missing-on.yml', '1:1: on', 'missing `on`'],
    [
      'needs-context-not-needed.yml',
      '15:21: jobs.deploy.steps[0].run',
      '`needs.build`: this job does not need `build`',
    ],
    ['needs-cycle.yml', '4:12: jobs.a.needs', 'jobs need each other in a cycle: a → b → a'],
    [
      'needs-unknown-job.yml',
      '7:13: jobs.build.needs[0]',
      'unknown job `tset`; did you mean `test`?',
    ],
    ['no-steps.yml', '4:12: jobs.build.steps', 'expected at least one step'],
    [
      'quoted-scalar-position.yml',
      '5:45: jobs.build.steps[0].run',
      'unknown context `secret`; did you mean `secrets`?',
    ],
    [
      'reusable-workflow-job.yml',
      '4:5: jobs.call.uses',
      '`uses` is not supported by Valve: see docs/workflows.md',
    ],
    ['run-and-uses.yml', '5:9: jobs.build.steps[0]', 'expected exactly one of `run` or `uses`'],
    [
      'secrets-in-runs-on.yml',
      '4:14: jobs.test.runs-on',
      'context `secrets` is not available in `jobs.<job_id>.runs-on`',
    ],
    [
      'shell-not-supported.yml',
      '6:16: jobs.build.steps[0].shell',
      'shell `pwsh` is not supported by Valve',
    ],
    [
      'status-function-outside-if.yml',
      '5:19: jobs.build.steps[0].run',
      '`failure()` is only available in `if` conditions',
    ],
    [
      'steps-context-later-step.yml',
      '5:19: jobs.build.steps[0].run',
      '`steps.version`: no earlier step of this job has `id: version`',
    ],
    [
      'timeout-not-positive.yml',
      '4:22: jobs.build.timeout-minutes',
      'expected a positive number of minutes',
    ],
    ['unknown-event.yml', '1:5: on', 'unknown event `pushh`; did you mean `push`?'],
    [
      'unknown-function.yml',
      '5:20: jobs.build.steps[0].run',
      'unknown function `tojsn()`; did you mean `toJSON()`?',
    ],
    [
      'unknown-key-hint.yml',
      '4:5: jobs.test.runs_on',
      'unknown key `runs_on`; did you mean `runs-on`?',
    ],
    [
      'unsupported-event.yml',
      '4:3: on.release',
      '`release` is not supported by Valve: see docs/workflows.md',
    ],
    [
      'unsupported-permissions.yml',
      '2:1: permissions',
      '`permissions` is not supported by Valve: see docs/workflows.md',
    ],
    [
      'uses-marketplace-action.yml',
      '5:15: jobs.build.steps[0].uses',
      '`actions/checkout@v4` is not available in Valve: use `valve/checkout@v1` instead',
    ],
    [
      'uses-unknown-builtin.yml',
      '5:15: jobs.build.steps[0].uses',
      'unknown built-in step `valve/chekout`; did you mean `valve/checkout@v1`?',
    ],
    ['with-on-run-step.yml', '6:9: jobs.build.steps[0].with', '`with` is only for `uses` steps'],
    ['yaml-syntax-error.yml', '6:1: ', 'Flow sequence in block collection'],
    [
      'yaml-tag-condition.yml',
      '7:13: ',
      'is read as a YAML tag, leaving the value empty: put the value in quotes',
    ],
  ];

  const dir = join(testdata, 'malformed');
  test('every file in testdata/malformed has a case', () => {
    assert.deepEqual(readdirSync(dir).sort(), cases.map(([file]) => file).sort());
  });

  for (const [file, where, fragment] of cases) {
    test(file, () => {
      const found = problems(readFileSync(join(dir, file), 'utf8'), file);
      const line = found.find((p) => p.startsWith(`${file}:${where}`));
      assert.ok(line, `expected ${file}:${where} in:\n${found.join('\n')}`);
      assert.ok(line.includes(fragment), `expected "${fragment}" in:\n${line}`);
    });
  }
});

describe('valid workflows', () => {
  const read = (name: string) => readFileSync(join(testdata, 'valid', name), 'utf8');

  test('every supported key parses into the documented shape', () => {
    const workflow = parseWorkflow(read('full.yml'), 'full.yml', { knownSteps: known });
    assert.equal(workflow.runName, 'Deploy ${{ inputs.target }} by @${{ github.actor }}');
    assert.deepEqual(workflow.on, {
      push: { branches: ['main', 'releases/**', '!releases/**-alpha'], pathsIgnore: ['docs/**'] },
      pullRequest: { branches: ['main'], types: ['opened', 'synchronize'] },
      workflowDispatch: {
        inputs: {
          target: {
            description: 'Where to deploy',
            type: 'choice',
            options: ['staging', 'production'],
            default: 'staging',
            required: false,
          },
          'dry-run': { type: 'boolean', default: false, required: false },
        },
      },
      schedule: [{ cron: '30 5 * * 1-5' }],
    });
    assert.deepEqual(workflow.env, {
      NODE_ENV: 'production',
      RETRIES: '3',
      TOKEN: '${{ secrets.NPM_TOKEN }}',
    });
    assert.deepEqual(workflow.defaults, { shell: 'bash', workingDirectory: 'app' });
    assert.deepEqual(workflow.concurrency, {
      group: 'ci-${{ github.ref }}',
      cancelInProgress: true,
    });
    assert.deepEqual(Object.keys(workflow.jobs), ['plan', 'test', 'deploy']);

    const test = workflow.jobs.test!;
    assert.equal(test.id, 'test');
    assert.deepEqual(test.needs, ['plan']);
    assert.deepEqual(test.runsOn, ['podman', '${{ matrix.os }}']);
    assert.equal(test.timeoutMinutes, 30);
    assert.equal(test.continueOnError, '${{ matrix.experimental == true }}');
    assert.deepEqual(test.strategy, {
      failFast: false,
      maxParallel: 2,
      matrix: {
        os: ['linux'],
        node: '${{ fromJSON(needs.plan.outputs.versions) }}',
        include: [{ node: 22, experimental: true }],
      },
    });
    assert.deepEqual(test.container, {
      image: 'node:${{ matrix.node }}',
      env: { CI: 'true' },
      credentials: { username: 'ci', password: '${{ secrets.REGISTRY_PASSWORD }}' },
    });
    assert.deepEqual(test.services.db, {
      image: 'postgres:16',
      ports: ['5432'],
      env: { POSTGRES_PASSWORD: '${{ secrets.DB_PASSWORD }}' },
      options: '--health-cmd pg_isready',
    });
    assert.deepEqual(test.defaults, { shell: 'sh' });
    assert.deepEqual(test.steps[1], {
      index: 1,
      id: 'install',
      name: 'Install',
      run: 'npm ci\necho "key=${{ hashFiles(\'package-lock.json\') }}" >> "$GITHUB_OUTPUT"\n',
      with: {},
      env: { NPM_TOKEN: '${{ secrets.NPM_TOKEN }}' },
      continueOnError: false,
      timeoutMinutes: 10,
    });
    assert.equal(test.steps[2]!.if, "steps.install.outcome == 'success' && !cancelled()");
    assert.equal(test.steps[2]!.workingDirectory, './app');
    assert.equal(test.steps[2]!.continueOnError, true);
    assert.deepEqual(test.steps[3]!.with, { path: 'coverage', strict: 'false' });

    const deploy = workflow.jobs.deploy!;
    assert.equal(
      deploy.if,
      "${{ github.ref == 'refs/heads/main' && needs.test.result == 'success' }}",
    );
    assert.deepEqual(deploy.environment, {
      name: "${{ inputs.target || 'staging' }}",
      url: '${{ steps.deploy.outputs.url }}',
    });
    assert.deepEqual(deploy.concurrency, {
      group: 'deploy-${{ inputs.target }}',
      cancelInProgress: false,
    });
    assert.deepEqual(deploy.runsOn, []);
    assert.deepEqual(jobOrder(workflow), ['plan', 'test', 'deploy']);
  });

  test('short forms are normalised', () => {
    const workflow = parseWorkflow(read('short-forms.yml'), 'short-forms.yml');
    assert.deepEqual(workflow.on, { push: {}, workflowDispatch: { inputs: {} } });
    const build = workflow.jobs.build!;
    assert.deepEqual(build.container, { image: 'alpine:3' });
    assert.deepEqual(build.environment, { name: 'production' });
    assert.deepEqual(build.concurrency, { group: 'build', cancelInProgress: false });
    assert.deepEqual(build.runsOn, ['local']);
    assert.deepEqual(workflow.jobs.release!.needs, ['build']);
    assert.deepEqual(workflow.jobs.release!.runsOn, ['podman', 'big']);
    assert.equal(workflow.jobs.release!.if, 'failure()');
  });

  test('without knownSteps any valve/<name>@v<n> is accepted', () => {
    const text = 'on: push\njobs:\n  a:\n    steps:\n      - uses: valve/anything@v2\n';
    assert.equal(parseWorkflow(text, 'ci.yml').jobs.a!.steps[0]!.uses, 'valve/anything@v2');
    assert.match(problems(text)[0]!, /unknown built-in step `valve\/anything`/);
  });
});

describe('jobOrder', () => {
  test('each job after the jobs it needs, file order otherwise', () => {
    const jobs = (spec: Record<string, string[]>) =>
      ({
        jobs: Object.fromEntries(Object.entries(spec).map(([id, needs]) => [id, { id, needs }])),
      }) as unknown as Workflow;
    assert.deepEqual(jobOrder(jobs({ deploy: ['build', 'test'], test: [], build: ['test'] })), [
      'test',
      'build',
      'deploy',
    ]);
    assert.deepEqual(jobOrder(jobs({ a: [], b: [], c: ['a'] })), ['a', 'b', 'c']);
    assert.throws(() => jobOrder(jobs({ a: ['c'], b: ['a'], c: ['b'] })), /a → c → b → a/);
  });
});

describe('expression availability', () => {
  const workflow = (jobs: string, on = 'push') => `on: ${on}\njobs:\n${jobs}`;

  test('what GitHub allows is accepted', () => {
    const ok = [
      // steps in job outputs and environment url; needs in job if; secrets in step env and with
      `  a:\n    outputs:\n      x: \${{ steps.s.outputs.x }}\n    environment:\n      name: prod\n      url: \${{ steps.s.outputs.url }}\n    steps:\n      - id: s\n        run: echo \${{ secrets.A }}\n`,
      `  a:\n    steps:\n      - run: echo\n  b:\n    needs: a\n    if: \${{ needs.a.result == 'success' || always() }}\n    steps:\n      - uses: valve/deploy@v1\n        with:\n          image: \${{ needs.A.outputs.image }}\n`,
      // matrix variables from include only, and a computed matrix allows any name
      `  a:\n    strategy:\n      matrix:\n        include:\n          - site: x\n    runs-on: \${{ matrix.site }}\n    steps:\n      - run: echo\n`,
      `  a:\n    strategy:\n      matrix: \${{ fromJSON(github.event.matrix) }}\n    steps:\n      - run: echo \${{ matrix.anything }}\n`,
      // a condition without ${{ }}, status functions and hashFiles in a step if
      `  a:\n    steps:\n      - run: echo\n        if: hashFiles('*.lock') != '' && failure()\n      - run: echo \${{ github.ref }} '\${{ toJSON(job) }}' \${{ runner.os }}\n`,
    ];
    for (const jobs of ok) assert.doesNotThrow(() => parseWorkflow(workflow(jobs), 'ci.yml'), jobs);
    const inputs = `\n  workflow_dispatch:\n    inputs:\n      target:\n        default: x\n  push:`;
    assert.doesNotThrow(() =>
      parseWorkflow(
        workflow(`  a:\n    steps:\n      - run: echo \${{ inputs.target }}\n`, inputs),
        'ci.yml',
      ),
    );
  });

  test('what GitHub rejects is an error', () => {
    const bad: [string, RegExp][] = [
      [
        `  a:\n    steps:\n      - run: echo\n        if: secrets.A == 'x'\n`,
        /context `secrets` is not available in `jobs.<job_id>.steps\[\*\].if`/,
      ],
      [
        `  a:\n    if: env.X == 'y'\n    steps:\n      - run: echo\n`,
        /context `env` is not available in `jobs.<job_id>.if`/,
      ],
      [
        `  a:\n    if: hashFiles('x') != ''\n    steps:\n      - run: echo\n`,
        /`hashFiles\(\)` is only available in steps/,
      ],
      [
        `  a:\n    if: needs.b.result\n    steps:\n      - run: echo\n`,
        /context `needs` is empty: this job has no `needs`/,
      ],
      [
        `  a:\n    strategy:\n      matrix:\n        os: ['\${{ matrix.x }}']\n    steps:\n      - run: echo\n`,
        /context `matrix` is not available in `jobs.<job_id>.strategy`/,
      ],
      [
        `  a:\n    steps:\n      - id: \${{ github.sha }}\n        run: echo\n`,
        /jobs\.a\.steps\[0\]\.id: expressions are not allowed here/,
      ],
      [
        `  a:\n    steps:\n      - run: echo\n  b:\n    steps:\n      - run: echo \${{ steps.x.outputs.y }}\n`,
        /`steps.x`: no earlier step/,
      ],
    ];
    for (const [jobs, message] of bad) {
      const found = problems(workflow(jobs));
      assert.ok(
        found.some((p) => message.test(p)),
        `${message} not in:\n${found.join('\n')}`,
      );
    }
  });

  test('all problems of a file are reported at once, in file order', () => {
    const found = problems(
      'on: push\njobs:\n  a:\n    runs_on: x\n    steps:\n      - run: echo ${{ vars.X }}\n      - run: echo\n        shel: sh\n',
    );
    assert.deepEqual(
      found.map((p) => p.split(': ')[0]),
      ['ci.yml:4:5', 'ci.yml:6:19', 'ci.yml:8:9'],
    );
  });
});

test('docs/workflows.md lists where each context is available, as the check applies it', () => {
  const docs = readFileSync(join(import.meta.dirname, '../../docs/workflows.md'), 'utf8');
  const rows = docs
    .split('\n')
    .map((line) => line.split('|').map((cell) => cell.trim()))
    .filter((cells) => cells.length === 5);
  for (const scope of Object.values(SCOPES)) {
    const row = rows.find((cells) => cells[1] === `\`${scope.key}\``);
    assert.ok(row, `no row for ${scope.key}`);
    assert.deepEqual(row[2]!.split(', '), scope.contexts, scope.key);
    assert.deepEqual(
      row[3] ? row[3].split(', ') : [],
      scope.functions.map((f) => `${f}()`),
      scope.key,
    );
  }
});
