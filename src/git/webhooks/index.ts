/**
 * git/webhooks: pushes to an external repository (GitHub, GitLab, Gitea) arriving as webhooks:
 * verify the delivery, read the push, mirror the pushed commit into the app's hosted repository.
 */
export {
  verifyWebhook,
  webhookProviders,
  type VerifyOptions,
  type WebhookProvider,
  type WebhookVerification,
} from './verify.js';
export { parsePushEvent, type ParsedWebhook, type PushCommit, type PushHook } from './events.js';
export { mirrorCommit, type MirrorCommitOptions } from './mirror.js';
export type { WebhookHeaders } from './headers.js';
