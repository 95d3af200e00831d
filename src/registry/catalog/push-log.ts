import type { Kysely } from 'kysely';
import { newId } from '../../ids.js';
import { now, sql } from '../../store/index.js';
import type { PushChannel, RegistryCatalogTables } from './migrations.js';

/** A manifest that was just stored, and who stored it. */
export interface ImagePush {
  repo: string;
  digest: string;
  mediaType: string;
  /** Bytes of the manifest. */
  size: number;
  /** Tags the push set; none for a push by digest. */
  tags: string[];
  pushedBy: string | null;
  via: PushChannel;
  /** The pipeline run whose step pushed, when it is known. */
  run?: { id: string; number: number } | null;
}

/** Who pushed, when and how: what the API shows next to a tag or a manifest. */
export interface PushView {
  by: string | null;
  at: string;
  via: PushChannel;
  /** Number of the run that pushed (via `pipeline`), if known. */
  run: number | null;
}

export interface PushRecord extends PushView {
  digest: string;
  tag: string | null;
}

/** The `image_pushes` table: every manifest push, so the catalog can say who pushed a tag. */
export class PushLog {
  constructor(private readonly db: Kysely<RegistryCatalogTables>) {}

  async record(push: ImagePush): Promise<void> {
    const pushedAt = now();
    const tags = push.tags.length > 0 ? [...new Set(push.tags)] : [null];
    await this.db
      .insertInto('image_pushes')
      .values(
        tags.map((tag) => ({
          id: newId('push'),
          repo: push.repo,
          digest: push.digest,
          tag,
          media_type: push.mediaType,
          size: push.size,
          pushed_by: push.pushedBy,
          pushed_at: pushedAt,
          via: push.via,
          run_id: push.run?.id ?? null,
          run_number: push.run?.number ?? null,
        })),
      )
      .execute();
  }

  /** Pushes to `repo`, newest first. */
  async history(repo: string, limit = 5000): Promise<PushRecord[]> {
    const rows = await this.db
      .selectFrom('image_pushes')
      .selectAll()
      .where('repo', '=', repo)
      .orderBy('pushed_at', 'desc')
      .orderBy(sql`rowid`, 'desc')
      .limit(limit)
      .execute();
    return rows.map(toRecord);
  }

  /** The newest push to `repo`, or null when nothing was recorded. */
  async latest(repo: string): Promise<PushRecord | null> {
    return (await this.history(repo, 1))[0] ?? null;
  }
}

/**
 * Who pushed what `tag` (or a digest) points at now: the newest push of that tag with that
 * digest, else the newest push of the digest under any tag. `history` is newest first.
 */
export function pushOf(history: PushRecord[], digest: string, tag?: string): PushView | null {
  const found =
    (tag !== undefined && history.find((p) => p.tag === tag && p.digest === digest)) ||
    history.find((p) => p.digest === digest);
  return found ? { by: found.by, at: found.at, via: found.via, run: found.run } : null;
}

function toRecord(row: RegistryCatalogTables['image_pushes']): PushRecord {
  return {
    digest: row.digest,
    tag: row.tag,
    by: row.pushed_by,
    at: row.pushed_at,
    via: row.via,
    run: row.run_number,
  };
}
