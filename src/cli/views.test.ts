import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalLabel, type DeployApprovalView } from './views.js';

const waiting: DeployApprovalView = {
  id: 'appr_1',
  kind: 'promote',
  environment: 'prod',
  summary: 'promote stage -> prod: hello@sha256:0123456789ab (source 1a2b3c4)',
  team: 'ops',
  status: 'pending',
  requestedBy: 'ada',
  requestedAt: '2026-01-01T00:00:00.000Z',
  expiresAt: '2026-01-01T01:00:00.000Z',
  decidedBy: null,
  comment: null,
  commit: null,
};

test('the APPROVAL column names the approving team, and says when a change waits for it', () => {
  assert.equal(approvalLabel({ approval: null, pendingApproval: null }), '');
  assert.equal(
    approvalLabel({ approval: { team: 'ops', timeoutMinutes: 60 }, pendingApproval: null }),
    'ops',
  );
  assert.equal(
    approvalLabel({ approval: { team: 'ops', timeoutMinutes: 60 }, pendingApproval: waiting }),
    'ops (pending)',
  );
  // valve.yaml dropped the rule while a request still waits: the request's team decides it.
  assert.equal(approvalLabel({ approval: null, pendingApproval: waiting }), 'ops (pending)');
});
