import type { NamedMigrations } from '../store/index.js';

export interface PipelineTables {
  runs: {
    id: string;
    app_id: string;
    team: string;
    app: string;
    number: number;
    workflow: string;
    status: string;
    commit_sha: string;
    ref: string;
    commit_message: string;
    actor: string;
    trigger: string;
    error: string | null;
    created_at: string;
    started_at: string | null;
    finished_at: string | null;
  };
  run_steps: {
    run_id: string;
    job_id: string;
    job_name: string;
    step_index: number;
    name: string;
    /** `run` (a script) or the built-in step used, e.g. `valve/deploy@v1`. */
    kind: string;
    status: string;
    exit_code: number | null;
    started_at: string | null;
    finished_at: string | null;
  };
}

export const pipelineMigrations: NamedMigrations = {
  '2026112320_pipelines_init': {
    async up(db) {
      await db.schema
        .createTable('runs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('app_id', 'text', (c) => c.notNull())
        .addColumn('team', 'text', (c) => c.notNull())
        .addColumn('app', 'text', (c) => c.notNull())
        .addColumn('number', 'integer', (c) => c.notNull())
        .addColumn('workflow', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('commit_sha', 'text', (c) => c.notNull())
        .addColumn('ref', 'text', (c) => c.notNull())
        .addColumn('commit_message', 'text', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('trigger', 'text', (c) => c.notNull())
        .addColumn('error', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .addUniqueConstraint('runs_app_number', ['app_id', 'number'])
        .execute();
      await db.schema.createIndex('runs_by_status').on('runs').column('status').execute();
      await db.schema
        .createTable('run_steps')
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id'))
        .addColumn('job_id', 'text', (c) => c.notNull())
        .addColumn('job_name', 'text', (c) => c.notNull())
        .addColumn('step_index', 'integer', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('exit_code', 'integer')
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .addPrimaryKeyConstraint('run_steps_pk', ['run_id', 'job_id', 'step_index'])
        .execute();
    },
  },
};
