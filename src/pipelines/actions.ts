/**
 * Local composite actions: `uses: ./path/to/action` runs the steps of `action.yml` (or
 * `action.yaml`) in that folder of the job's workspace, with their own `inputs` and `outputs`,
 * as GitHub's `runs.using: composite` does. The file is validated like a workflow file.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { z } from 'zod';
import { parseYaml, validateYaml } from '../formats/yaml.js';
import type { Step } from './workflow.js';

const scalar = z.union([z.string(), z.number(), z.boolean()]).transform(String);

const actionStep = z.strictObject({
  name: z.string().optional(),
  id: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_-]*$/)
    .optional(),
  if: z.union([z.string(), z.boolean()]).transform(String).optional(),
  run: z.string().optional(),
  shell: z.enum(['bash', 'sh']).optional(),
  uses: z.string().optional(),
  with: z.record(z.string(), scalar).optional(),
  env: z.record(z.string(), scalar).optional(),
  'working-directory': z.string().optional(),
  'continue-on-error': z.union([z.boolean(), z.string()]).optional(),
});

const actionSchema = z.strictObject({
  name: z.string(),
  description: z.string().optional(),
  author: z.string().optional(),
  inputs: z
    .record(
      z.string(),
      z.strictObject({
        description: z.string().optional(),
        required: z.boolean().optional(),
        default: scalar.optional(),
        deprecationMessage: z.string().optional(),
      }),
    )
    .optional(),
  outputs: z
    .record(z.string(), z.strictObject({ description: z.string().optional(), value: z.string() }))
    .optional(),
  runs: z.strictObject({
    using: z.literal('composite', {
      message: 'expected "composite": only composite actions run in Valve',
    }),
    steps: z.array(actionStep).min(1, 'expected at least one step'),
  }),
});

export interface CompositeAction {
  file: string;
  name: string;
  inputs: Record<string, { required: boolean; default?: string }>;
  outputs: Record<string, string>;
  steps: Step[];
}

/** Loads `./path` relative to the workspace; throws FileValidationError or a plain Error naming what is missing. */
export function loadCompositeAction(workspace: string, uses: string): CompositeAction {
  const dir = resolve(workspace, uses);
  if (dir !== workspace && !dir.startsWith(`${workspace}/`))
    throw new Error(`uses: ${uses} is outside the workspace`);
  const file = ['action.yml', 'action.yaml']
    .map((name) => join(dir, name))
    .find((path) => existsSync(path));
  if (!file)
    throw new Error(
      `uses: ${uses}: no action.yml in ${relative(workspace, dir) || '.'} (did the job check out the repository first?)`,
    );
  const display = relative(workspace, file);
  const action = validateYaml(parseYaml(readFileSync(file, 'utf8'), display), actionSchema);
  return {
    file: display,
    name: action.name,
    inputs: Object.fromEntries(
      Object.entries(action.inputs ?? {}).map(([name, input]) => [
        name,
        { required: input.required ?? false, default: input.default },
      ]),
    ),
    outputs: Object.fromEntries(
      Object.entries(action.outputs ?? {}).map(([name, output]) => [name, output.value]),
    ),
    steps: action.runs.steps.map((step, index) => ({
      index,
      id: step.id,
      name: step.name,
      if: step.if,
      run: step.run,
      uses: step.uses,
      with: step.with ?? {},
      shell: step.shell,
      workingDirectory: step['working-directory'],
      env: step.env ?? {},
      continueOnError: step['continue-on-error'] ?? false,
    })),
  };
}
