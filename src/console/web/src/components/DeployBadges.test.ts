import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import type { DeployApproval } from '../api.js';
import { ApprovalBadge } from './DeployBadges.js';

const waiting: DeployApproval = {
  id: 'appr_1',
  kind: 'promote',
  environment: 'prod',
  summary: 'promote stage -> prod: hello@sha256:0123456789ab (source 1a2b3c4)',
  image: '127.0.0.1:7080/dev/hello@sha256:0123456789ab',
  sourceCommit: '1a2b3c4',
  from: { environment: 'stage', commit: 'c0ffee0' },
  rollbackTo: null,
  team: 'ops',
  status: 'pending',
  requestedBy: 'ada',
  requestedAt: '2026-01-01T10:00:00Z',
  expiresAt: '2026-01-01T11:00:00Z',
  decidedBy: null,
  decidedAt: null,
  comment: null,
  commit: null,
};

const badge = (env: Parameters<typeof ApprovalBadge>[0]['env']) =>
  renderToStaticMarkup(createElement(ApprovalBadge, { env, testId: 'env-approval' }));

test('the approval badge names the approving team, and says when a change waits for it', () => {
  assert.equal(badge({ name: 'dev', approval: null, pendingApproval: null }), '');

  const rule = badge({
    name: 'prod',
    approval: { team: 'ops', timeoutMinutes: 60 },
    pendingApproval: null,
  });
  assert.match(rule, /data-team="ops"/);
  assert.match(rule, /data-pending="false"/);
  assert.match(rule, />approval: ops</);
  assert.match(
    rule,
    /title="Deploys, promotions and rollbacks to prod wait for a member of team ops"/,
  );

  const pending = badge({
    name: 'prod',
    approval: { team: 'ops', timeoutMinutes: 60 },
    pendingApproval: waiting,
  });
  assert.match(pending, /data-pending="true"/);
  assert.match(pending, /badge-wait/);
  assert.match(pending, />approval pending: ops</);
  assert.match(pending, /asked by ada/);

  // valve.yaml dropped the rule while the request waits: it still shows, with its team.
  assert.match(
    badge({ name: 'prod', approval: null, pendingApproval: waiting }),
    />approval pending: ops</,
  );
});
