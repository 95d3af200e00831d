import type { NamedMigrations } from '../../store/index.js';

/** How an image reached the registry: a client over `/v2/`, or a pipeline's built-in step. */
export const pushChannels = ['registry', 'pipeline'] as const;
export type PushChannel = (typeof pushChannels)[number];

export interface RegistryCatalogTables {
  /** One row per manifest push and tag (a push by digest without a tag has `tag` null). */
  image_pushes: {
    id: string;
    repo: string;
    digest: string;
    tag: string | null;
    media_type: string;
    /** Bytes of the manifest itself. */
    size: number;
    /** The user who pushed, or whose run did; null when a pipeline push has no single run. */
    pushed_by: string | null;
    pushed_at: string;
    via: PushChannel;
    run_id: string | null;
    run_number: number | null;
  };
}

export const registryCatalogMigrations: NamedMigrations = {
  '2026112345_registry_catalog_image_pushes': {
    async up(db) {
      await db.schema
        .createTable('image_pushes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('repo', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('tag', 'text')
        .addColumn('media_type', 'text', (c) => c.notNull())
        .addColumn('size', 'integer', (c) => c.notNull())
        .addColumn('pushed_by', 'text')
        .addColumn('pushed_at', 'text', (c) => c.notNull())
        .addColumn('via', 'text', (c) => c.notNull())
        .addColumn('run_id', 'text')
        .addColumn('run_number', 'integer')
        .execute();
      await db.schema
        .createIndex('image_pushes_by_repo')
        .on('image_pushes')
        .columns(['repo', 'pushed_at'])
        .execute();
    },
  },
};
