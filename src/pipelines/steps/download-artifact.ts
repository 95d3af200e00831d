import { join } from 'node:path';
import { z } from 'zod';
import { extractArchive } from './archive.js';
import { ArtifactStore, artifactNameSchema, type ArtifactMetadata } from './artifact-store.js';
import { defineStep, type StepContext } from './step.js';
import { makeWorkspaceDir, workspaceRelative } from './workspace-files.js';

/**
 * Unpacks artifacts uploaded earlier in the same run into the workspace, checking the archive's
 * digest before and every file's size and sha256 while unpacking. Without `name`, every
 * artifact of the run goes into `<path>/<name>/` (actions/download-artifact v4).
 */
export const downloadArtifactStep = defineStep({
  name: 'download-artifact',
  description: 'Unpack an artifact of this run into the workspace.',
  inputs: z.strictObject({
    name: artifactNameSchema.optional(),
    path: z.string().min(1).default('.'),
  }),
  async run(context, inputs) {
    const relative = workspaceRelative(context.workspace, inputs.path, 'with.path');
    const destination = await makeWorkspaceDir(context.workspace, relative, 'with.path');
    const store = new ArtifactStore(context.storage.artifacts);
    if (inputs.name !== undefined) {
      const artifact = await store.get(inputs.name);
      if (!artifact) {
        const names = (await store.list()).map((found) => found.name);
        throw new Error(
          `no artifact named ${inputs.name} in this run (${names.length ? `there are: ${names.join(', ')}` : 'none were uploaded'})`,
        );
      }
      await unpack(context, store, artifact, destination);
    } else {
      const artifacts = await store.list();
      if (artifacts.length === 0) context.log('warning: no artifacts were uploaded in this run');
      for (const artifact of artifacts) {
        const into = join(relative, artifact.name);
        await unpack(
          context,
          store,
          artifact,
          await makeWorkspaceDir(context.workspace, into, 'with.path'),
        );
      }
    }
    return { 'download-path': destination };
  },
});

async function unpack(
  context: StepContext,
  store: ArtifactStore,
  artifact: ArtifactMetadata,
  destination: string,
): Promise<void> {
  await store.verify(artifact);
  await extractArchive(store.archivePath(artifact.name), destination, {
    expect: new Map(artifact.files.map((file) => [file.path, file])),
    signal: context.signal,
  });
  context.log(
    `downloaded artifact ${artifact.name}: ${artifact.files.length} files to ${destination}`,
  );
}
