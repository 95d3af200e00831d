/**
 * The one table of Valve's error codes. Subsystems throw `ValveError`s with a code from here;
 * the HTTP layer (src/http/errors.ts) is the only place that turns them into responses.
 * docs/errors.md lists every code; src/errors.test.ts keeps the two in step.
 */
export const errorTable = {
  INPUT_INVALID: { status: 400, message: 'invalid input' },
  AUTH_REQUIRED: { status: 401, message: 'authentication required' },
  AUTH_BAD_CREDENTIALS: { status: 401, message: 'wrong username, password or token' },
  AUTH_FORBIDDEN: { status: 403, message: 'not allowed' },
  AUTH_USERNAME_TAKEN: { status: 409, message: 'username is taken' },
  AUTH_TEAM_EXISTS: { status: 409, message: 'team already exists' },
  NOT_FOUND: { status: 404, message: 'not found' },
  CONFLICT: { status: 409, message: 'conflict' },
  APP_EXISTS: { status: 409, message: 'an app with this name already exists in the team' },
  APP_TEMPLATE_UNKNOWN: { status: 400, message: 'unknown app template' },
  GIT_FAILED: { status: 500, message: 'git command failed' },
  PIPE_WORKFLOW_INVALID: { status: 400, message: 'workflow file is invalid' },
  PIPE_RUN_NOT_CANCELLABLE: { status: 409, message: 'run is already finished' },
  DEPLOY_SPEC_INVALID: { status: 400, message: 'app spec is invalid' },
  DEPLOY_MANIFEST_INVALID: { status: 400, message: 'deploy manifest is invalid' },
  DEPLOY_ENV_UNKNOWN: { status: 404, message: 'unknown environment' },
  DEPLOY_IMAGE_UNAVAILABLE: { status: 400, message: 'image is not in the registry' },
  DEPLOY_ROLLOUT_FAILED: {
    status: 409,
    message: 'the new version did not become ready; the previous one keeps serving',
  },
  DEPLOY_NOTHING_DEPLOYED: { status: 409, message: 'nothing is deployed in the environment' },
  DEPLOY_REVISION_UNKNOWN: {
    status: 404,
    message: "no such deploy in the environment's history",
  },
  DEPLOY_APPROVAL_TEAM_UNKNOWN: {
    status: 409,
    message: 'the approving team does not exist',
  },
  DEPLOY_APPROVAL_DECIDED: { status: 409, message: 'the approval is already decided' },
  DEPLOY_TARGET_UNKNOWN: {
    status: 400,
    message: 'the target is not registered for the team',
  },
  DEPLOY_TARGET_EXISTS: { status: 409, message: 'the team already has a target of this name' },
  DEPLOY_TARGET_IN_USE: { status: 409, message: 'environments still run on the target' },
  DEPLOY_TARGET_NO_DRIVER: { status: 503, message: "the target's driver is not available" },
  INTERNAL: { status: 500, message: 'internal error' },
} as const;

export type ErrorCode = keyof typeof errorTable;

export class ValveError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message?: string, details?: Record<string, unknown>) {
    super(message ?? errorTable[code].message);
    this.name = 'ValveError';
    this.code = code;
    this.status = errorTable[code].status;
    this.details = details;
  }
}

export const invalidInput = (message: string, details?: Record<string, unknown>) =>
  new ValveError('INPUT_INVALID', message, details);
export const notFound = (what: string) => new ValveError('NOT_FOUND', `${what} not found`);
export const forbidden = (message = 'not allowed') => new ValveError('AUTH_FORBIDDEN', message);
