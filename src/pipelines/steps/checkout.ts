import { z } from 'zod';
import { runGit } from '../../git/index.js';
import { defineStep } from './step.js';

/** Puts the pushed commit into the workspace, with its history, as actions/checkout does. */
export const checkout = defineStep({
  name: 'checkout',
  description: 'Check out the commit that started the run into the workspace.',
  inputs: z.strictObject({}),
  async run(context) {
    const gitDir = context.services.git.pathOf(`${context.run.team}/${context.run.app}.git`);
    // A local clone hard-links the objects: fast, and independent of later pushes.
    await runGit(gitDir, ['clone', '--quiet', '--no-checkout', gitDir, context.workspace]);
    await runGit(`${context.workspace}/.git`, [
      '--work-tree',
      context.workspace,
      'checkout',
      '--quiet',
      '--detach',
      context.run.commit,
    ]);
    context.log(`checked out ${context.run.commit.slice(0, 12)} (${context.run.ref})`);
    return { commit: context.run.commit };
  },
});
