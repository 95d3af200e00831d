import type { Kysely } from 'kysely';
import { z } from 'zod';
import { ValveError, notFound } from '../../errors.js';
import { newId } from '../../ids.js';
import { now } from '../../store/index.js';
import type { PipelineTables } from '../migrations.js';
import type { SecretCipher } from './cipher.js';
import { MIN_SECRET_LENGTH } from './mask.js';

export const secretName = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_]{0,99}$/,
    'expected letters, digits and _, not starting with a digit',
  )
  .refine(
    (n) => !/^(GITHUB|VALVE)_/i.test(n),
    'names starting with GITHUB_ or VALVE_ are reserved',
  );
export const secretValue = z
  .string()
  .min(
    MIN_SECRET_LENGTH,
    `expected at least ${MIN_SECRET_LENGTH} characters (shorter values cannot be masked in logs)`,
  )
  .max(64 * 1024, 'expected at most 64 KiB');

export interface SecretScope {
  team: string;
  /** null: a team secret, visible to every app of the team. */
  app: string | null;
}

const aad = (scope: SecretScope, name: string) => `${scope.team}/${scope.app ?? '*'}/${name}`;

/** Secrets per team and per app, encrypted at rest; an app secret wins over a team secret of the same name. */
export class SecretStore {
  constructor(
    private readonly db: Kysely<PipelineTables>,
    private readonly cipher: SecretCipher,
  ) {}

  async set(scope: SecretScope, name: string, value: string, actor: string): Promise<void> {
    const sealed = this.cipher.encrypt(value, aad(scope, name));
    await this.db
      .insertInto('secrets')
      .values({
        id: newId('sec'),
        team: scope.team,
        app: scope.app ?? '',
        name,
        sealed,
        updated_at: now(),
        updated_by: actor,
      })
      .onConflict((oc) =>
        oc
          .columns(['team', 'app', 'name'])
          .doUpdateSet({ sealed, updated_at: now(), updated_by: actor }),
      )
      .execute();
  }

  async remove(scope: SecretScope, name: string): Promise<void> {
    const result = await this.db
      .deleteFrom('secrets')
      .where('team', '=', scope.team)
      .where('app', '=', scope.app ?? '')
      .where('name', '=', name)
      .executeTakeFirst();
    if (Number(result.numDeletedRows) === 0) throw notFound(`secret ${name}`);
  }

  async list(scope: SecretScope) {
    const rows = await this.db
      .selectFrom('secrets')
      .select(['name', 'updated_at', 'updated_by'])
      .where('team', '=', scope.team)
      .where('app', '=', scope.app ?? '')
      .orderBy('name')
      .execute();
    return rows.map((r) => ({
      name: r.name,
      scope: scope.app ? 'app' : 'team',
      updatedAt: r.updated_at,
      updatedBy: r.updated_by,
    }));
  }

  /** The named secrets an app's run may use, decrypted; names that do not exist are left out. */
  async resolve(team: string, app: string, names: string[]): Promise<Record<string, string>> {
    if (names.length === 0) return {};
    const rows = await this.db
      .selectFrom('secrets')
      .selectAll()
      .where('team', '=', team)
      .where('app', 'in', ['', app])
      .where('name', 'in', names)
      .execute();
    const values: Record<string, string> = {};
    // Team secrets first, then app secrets over them.
    for (const row of rows.sort((a, b) => a.app.length - b.app.length)) {
      try {
        values[row.name] = this.cipher.decrypt(
          row.sealed,
          aad({ team, app: row.app || null }, row.name),
        );
      } catch {
        throw new ValveError(
          'INTERNAL',
          `secret ${row.name} cannot be decrypted: was the secret key changed?`,
        );
      }
    }
    return values;
  }
}
