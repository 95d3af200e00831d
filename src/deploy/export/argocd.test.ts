import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import { argoApplication } from './argocd.js';

test('an Argo CD Application follows envs/<env> of the deploy repo with the sync options', () => {
  const application = parse(
    argoApplication({
      team: 'dev',
      app: 'hello',
      env: 'prod',
      repoURL: 'https://valve.example.com/git/dev/hello.deploy.git',
      sync: { automated: true, selfHeal: true, prune: false },
    }),
  );
  assert.deepEqual(application, {
    apiVersion: 'argoproj.io/v1alpha1',
    kind: 'Application',
    metadata: {
      name: 'dev-hello-prod',
      namespace: 'argocd',
      labels: {
        'app.kubernetes.io/name': 'hello',
        'app.kubernetes.io/instance': 'hello-prod',
        'valve.dev/team': 'dev',
        'valve.dev/environment': 'prod',
      },
    },
    spec: {
      project: 'default',
      source: {
        repoURL: 'https://valve.example.com/git/dev/hello.deploy.git',
        targetRevision: 'main',
        path: 'envs/prod',
      },
      destination: { server: 'https://kubernetes.default.svc', namespace: 'dev-prod' },
      syncPolicy: {
        automated: { prune: false, selfHeal: true },
        syncOptions: ['CreateNamespace=true'],
      },
    },
  });
});

test('manual sync leaves automated out; a named cluster and revision are kept', () => {
  const application = parse(
    argoApplication({
      team: 'dev',
      app: 'hello',
      env: 'stage',
      repoURL: 'git@example.com:dev/hello.deploy.git',
      targetRevision: 'v1.2.0',
      destination: { name: 'edge', namespace: 'hello' },
      sync: { automated: false, selfHeal: true, prune: true },
    }),
  );
  assert.equal(application.spec.source.targetRevision, 'v1.2.0');
  assert.deepEqual(application.spec.destination, { name: 'edge', namespace: 'hello' });
  assert.deepEqual(application.spec.syncPolicy, { syncOptions: ['CreateNamespace=true'] });
});
