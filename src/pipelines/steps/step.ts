import type { z } from 'zod';
import type { DeployService } from '../../deploy/index.js';
import type { GitService } from '../../git/index.js';
import type { Registry } from '../../registry/index.js';

/** What a built-in step may use: other subsystems through their public interfaces. */
export interface StepServices {
  git: GitService;
  registry: Registry;
  deploy: DeployService;
  /** host:port under which the registry is reached, used in image references. */
  registryHost(): string;
}

export interface StepContext {
  workspace: string;
  run: {
    id: string;
    number: number;
    team: string;
    app: string;
    commit: string;
    ref: string;
    actor: string;
  };
  signal: AbortSignal;
  services: StepServices;
  log(text: string): void;
}

/** A built-in step, `uses: valve/<name>@v1`: its `with` inputs schema and what it does. */
export interface BuiltinStep<I extends z.ZodType = z.ZodType> {
  name: string;
  description: string;
  inputs: I;
  run(context: StepContext, inputs: z.infer<I>): Promise<Record<string, string>>;
}

export const defineStep = <I extends z.ZodType>(step: BuiltinStep<I>) => step;
