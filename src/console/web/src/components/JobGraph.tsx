/**
 * A run's jobs as a graph: one column per `needs` depth (a job stands one column right of the
 * deepest job it needs), a box per job (matrix entries are boxes of their own) coloured by
 * status, and a line from each needed job to the job that needs it; a line that skips columns
 * runs in the gap between two rows, never behind another job's box. The layout is computed,
 * not measured, so boxes and lines always agree.
 */
import type { Job } from '../api.js';
import { elapsed, matrixLabel } from '../format.js';
import { StatusBadge, toneOf } from './StatusBadge.js';

const BOX_WIDTH = 220;
const BOX_HEIGHT = 68;
const COLUMN_GAP = 56;
const ROW_GAP = 20;
const PADDING = 4;

export interface GraphNode {
  job: Job;
  column: number;
  row: number;
  x: number;
  y: number;
}

export interface GraphEdge {
  from: GraphNode;
  to: GraphNode;
  /** The SVG path from the right side of `from` to the left side of `to`. */
  path: string;
}

export interface GraphLayout {
  nodes: GraphNode[];
  edges: GraphEdge[];
  width: number;
  height: number;
}

/** Columns by `needs` depth; within a column, the run's own job order. */
export function layoutJobs(jobs: Job[]): GraphLayout {
  const byKey = new Map(jobs.map((job) => [job.key, job]));
  const depths = new Map<string, number>();
  const depthOf = (key: string, visiting: Set<string>): number => {
    const known = depths.get(key);
    if (known !== undefined) return known;
    // A cycle cannot come from a valid workflow; drawing it flat beats hanging the page.
    if (visiting.has(key)) return 0;
    visiting.add(key);
    const needs = (byKey.get(key)?.needs ?? []).filter((need) => byKey.has(need));
    const depth = needs.length ? 1 + Math.max(...needs.map((need) => depthOf(need, visiting))) : 0;
    visiting.delete(key);
    depths.set(key, depth);
    return depth;
  };

  const columns: Job[][] = [];
  for (const job of jobs) {
    const depth = depthOf(job.key, new Set());
    (columns[depth] ??= []).push(job);
  }
  const nodes: GraphNode[] = [];
  columns.forEach((column, c) =>
    column.forEach((job, row) =>
      nodes.push({
        job,
        column: c,
        row,
        x: PADDING + c * (BOX_WIDTH + COLUMN_GAP),
        y: PADDING + row * (BOX_HEIGHT + ROW_GAP),
      }),
    ),
  );
  const rows = Math.max(0, ...columns.map((column) => column?.length ?? 0));
  const nodeOf = new Map(nodes.map((node) => [node.job.key, node]));
  let lowestLane = 0;
  const edges = nodes.flatMap((to) =>
    to.job.needs.flatMap((need) => {
      const from = nodeOf.get(need);
      if (!from) return [];
      if (to.column - from.column <= 1) return [{ from, to, path: edgePath(from, to, null) }];
      // The row gap nearest to both ends; the one below the last row exists for this.
      const middle = (from.row + to.row + 1) / 2;
      const lane = Math.min(Math.max(1, Math.round(middle)), rows);
      lowestLane = Math.max(lowestLane, lane);
      return [
        {
          from,
          to,
          path: edgePath(from, to, PADDING + lane * (BOX_HEIGHT + ROW_GAP) - ROW_GAP / 2),
        },
      ];
    }),
  );
  const boxesHeight = PADDING * 2 + rows * BOX_HEIGHT + Math.max(0, rows - 1) * ROW_GAP;
  return {
    nodes,
    edges,
    width: PADDING * 2 + columns.length * BOX_WIDTH + Math.max(0, columns.length - 1) * COLUMN_GAP,
    height: lowestLane === rows && rows > 0 ? boxesHeight + ROW_GAP : boxesHeight,
  };
}

/**
 * From the middle of the right side of `from` to the middle of the left side of `to`: one
 * curve between neighbouring columns; over more columns, down (or up) to `laneY` in the first
 * gap, along it, and into the target in the last gap.
 */
function edgePath(from: GraphNode, to: GraphNode, laneY: number | null): string {
  const x1 = from.x + BOX_WIDTH;
  const y1 = from.y + BOX_HEIGHT / 2;
  const x2 = to.x;
  const y2 = to.y + BOX_HEIGHT / 2;
  const gap = COLUMN_GAP;
  if (laneY === null) {
    return `M ${x1} ${y1} C ${x1 + gap / 2} ${y1}, ${x2 - gap / 2} ${y2}, ${x2} ${y2}`;
  }
  return [
    `M ${x1} ${y1}`,
    `C ${x1 + gap * 0.8} ${y1}, ${x1 + gap * 0.2} ${laneY}, ${x1 + gap} ${laneY}`,
    `L ${x2 - gap} ${laneY}`,
    `C ${x2 - gap * 0.2} ${laneY}, ${x2 - gap * 0.8} ${y2}, ${x2} ${y2}`,
  ].join(' ');
}

/** "test (20, linux)" with matrix {node: 20, os: linux} -> "test": the values are shown below it. */
export function jobTitle(job: Job): string {
  if (!job.matrix) return job.name;
  const values = Object.values(job.matrix)
    .map((v) => (typeof v === 'string' ? v : JSON.stringify(v)))
    .join(', ');
  const suffix = ` (${values})`;
  return job.name.endsWith(suffix) ? job.name.slice(0, -suffix.length) : job.name;
}

/** A job's state in a few words: its status, or what it waits for. */
function jobNote(job: Job, now: number): string {
  if (job.environment?.approval?.status === 'pending')
    return `waiting for approval (${job.environment.name})`;
  if (job.status === 'waiting') return 'waiting';
  return elapsed(job.startedAt, job.finishedAt, now);
}

export function JobGraph({
  jobs,
  selected,
  onSelect,
  now,
}: {
  jobs: Job[];
  selected: string | null;
  onSelect: (key: string) => void;
  now: number;
}) {
  const layout = layoutJobs(jobs);
  return (
    <div className="job-graph-scroll">
      <div
        className="job-graph"
        data-testid="job-graph"
        style={{ width: layout.width, height: layout.height }}
      >
        <svg className="job-edges" width={layout.width} height={layout.height} aria-hidden="true">
          {layout.edges.map(({ from, to, path }) => (
            <path
              key={`${from.job.key}->${to.job.key}`}
              className={`job-edge job-edge-${toneOf(from.job.status)}`}
              d={path}
              data-testid="job-edge"
              data-from={from.job.key}
              data-to={to.job.key}
            />
          ))}
        </svg>
        {layout.nodes.map(({ job, x, y, column }) => {
          const matrix = matrixLabel(job.matrix);
          return (
            <button
              type="button"
              key={job.key}
              className={`job-node job-node-${toneOf(job.status)}${selected === job.key ? ' selected' : ''}`}
              style={{ left: x, top: y, width: BOX_WIDTH, height: BOX_HEIGHT }}
              aria-pressed={selected === job.key}
              title={job.key}
              onClick={() => onSelect(job.key)}
              data-testid="job-node"
              data-job={job.key}
              data-job-id={job.id}
              data-status={job.status}
              data-column={column}
            >
              <span className="job-node-head">
                <StatusBadge status={job.status} />
                <span className="job-node-name">{jobTitle(job)}</span>
              </span>
              {matrix && (
                <span className="job-node-matrix" data-testid="job-matrix">
                  {matrix}
                </span>
              )}
              <span className="job-node-note">{jobNote(job, now)}</span>
            </button>
          );
        })}
      </div>
    </div>
  );
}
