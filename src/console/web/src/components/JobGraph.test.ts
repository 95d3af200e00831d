import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Job } from '../api.js';
import { jobTitle, layoutJobs } from './JobGraph.js';

const job = (key: string, needs: string[] = []): Job => ({
  key,
  id: key.split(' ')[0] ?? key,
  name: key,
  matrix: null,
  needs,
  runsOn: 'local',
  status: 'pending',
  startedAt: null,
  finishedAt: null,
  outputs: {},
  environment: null,
  steps: [],
});

test('jobs stand in columns by needs depth, one edge per need', () => {
  const layout = layoutJobs([
    job('build'),
    job('lint'),
    job('test (node 20)', ['build']),
    job('test (node 22)', ['build']),
    job('deploy', ['test (node 20)', 'test (node 22)', 'lint']),
  ]);
  const column = Object.fromEntries(layout.nodes.map((n) => [n.job.key, [n.column, n.row]]));
  assert.deepEqual(column, {
    build: [0, 0],
    lint: [0, 1],
    'test (node 20)': [1, 0],
    'test (node 22)': [1, 1],
    deploy: [2, 0],
  });
  assert.deepEqual(
    layout.edges.map((e) => `${e.from.job.key}->${e.to.job.key}`),
    [
      'build->test (node 20)',
      'build->test (node 22)',
      'test (node 20)->deploy',
      'test (node 22)->deploy',
      'lint->deploy',
    ],
  );
  // Every box inside the drawing.
  for (const node of layout.nodes) assert.ok(node.x >= 0 && node.x < layout.width);

  // lint (column 0, row 1) -> deploy (column 2, row 0) skips a column: it runs along the gap
  // between rows 0 and 1, not behind the test boxes.
  const long = layout.edges.find((e) => e.from.job.key === 'lint')!;
  const lane = /L (\S+) (\S+)/.exec(long.path);
  assert.ok(lane, long.path);
  const [test20, test22] = ['test (node 20)', 'test (node 22)'].map((key) =>
    layout.nodes.find((n) => n.job.key === key)!,
  );
  const laneY = Number(lane[2]);
  assert.ok(laneY > test20!.y && laneY < test22!.y, `lane at ${laneY}`);
  assert.doesNotMatch(layout.edges[0]!.path, / L /, 'neighbouring columns: one curve');
});

test('a matrix job is titled without its values, which are shown apart', () => {
  assert.equal(jobTitle({ ...job('test (20, linux)'), matrix: { node: 20, os: 'linux' } }), 'test');
  assert.equal(jobTitle({ ...job('Unit tests'), matrix: { node: 20 } }), 'Unit tests');
  assert.equal(jobTitle(job('build')), 'build');
});

test('a need on an unknown job or a cycle does not break the layout', () => {
  const layout = layoutJobs([job('a', ['b']), job('b', ['a']), job('c', ['missing'])]);
  assert.equal(layout.nodes.length, 3);
  assert.equal(layout.nodes.find((n) => n.job.key === 'c')?.column, 0);
});
