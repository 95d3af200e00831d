import { z } from 'zod';
import { writeArchive } from './archive.js';
import { ArtifactStore, artifactNameSchema } from './artifact-store.js';
import { defineStep } from './step.js';
import {
  commonAncestor,
  normalizePatterns,
  resolveFileLink,
  selectFiles,
  splitList,
  type WorkspaceEntry,
} from './workspace-files.js';

const flag = z
  .enum(['true', 'false'])
  .default('false')
  .transform((value) => value === 'true');

export const DEFAULT_RETENTION_DAYS = 90;

/**
 * Stores files of the workspace as a named artifact of the run, for later jobs of the run
 * (`valve/download-artifact`) and for people. Semantics of actions/upload-artifact v4: names are
 * unique per run (immutable unless `overwrite`), paths keep their hierarchy below the least
 * common ancestor of the search paths, hidden files only on request.
 */
export const uploadArtifactStep = defineStep({
  name: 'upload-artifact',
  description: 'Store workspace files as a named artifact of the run.',
  inputs: z.strictObject({
    name: artifactNameSchema.default('artifact'),
    path: z
      .string()
      .transform(splitList)
      .refine((paths) => paths.length > 0, 'expected at least one path or glob'),
    'if-no-files-found': z.enum(['warn', 'error', 'ignore']).default('warn'),
    // 0 means the default, as in GitHub.
    'retention-days': z.coerce.number().int().min(0).max(90).default(0),
    'compression-level': z.coerce.number().int().min(0).max(9).default(6),
    overwrite: flag,
    'include-hidden-files': flag,
  }),
  async run(context, inputs): Promise<Record<string, string>> {
    const patterns = normalizePatterns(context.workspace, inputs.path, 'with.path');
    const selection = await selectFiles(context.workspace, patterns, {
      dot: inputs['include-hidden-files'],
      what: 'with.path',
      signal: context.signal,
    });
    const files: WorkspaceEntry[] = [];
    for (const entry of selection.entries) {
      if (entry.type === 'file') {
        files.push(entry);
        continue;
      }
      // Like GitHub, a link is uploaded as the file it points to, when that is in the workspace.
      const target = await resolveFileLink(context.workspace, entry);
      if (target) files.push({ ...entry, ...target, type: 'file' });
      else context.log(`warning: ${entry.path} is a symlink to no file in the workspace; skipped`);
    }
    if (files.length === 0) {
      const message = `no files were found with the provided path: ${inputs.path.join(' ')}`;
      if (inputs['if-no-files-found'] === 'error') throw new Error(message);
      if (inputs['if-no-files-found'] === 'warn') {
        context.log(`warning: ${message}; no artifact uploaded`);
      }
      return {};
    }
    const root = commonAncestor(selection.searchBases);
    const retentionDays = inputs['retention-days'] || DEFAULT_RETENTION_DAYS;
    const store = new ArtifactStore(context.storage.artifacts);
    const artifact = await store.put({
      name: inputs.name,
      runId: context.run.id,
      jobKey: context.run.jobKey,
      retentionDays,
      overwrite: inputs.overwrite,
      write: (archive) =>
        writeArchive(files, archive, {
          root,
          level: inputs['compression-level'],
          signal: context.signal,
        }),
    });
    context.log(
      `uploaded artifact ${artifact.name}: ${artifact.files.length} files, ${artifact.size} bytes (${artifact.digest}), kept ${retentionDays} days`,
    );
    return {
      'artifact-id': artifact.id,
      'artifact-digest': artifact.digest,
      size: String(artifact.size),
    };
  },
});
