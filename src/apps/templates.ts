/**
 * Built-in app templates: each a folder under src/apps/templates/ with the app's files (app
 * spec, workflow, source) and a template.json describing it. `{{app}}` and `{{team}}` in file
 * contents are filled in when an app is created.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ValveError } from '../errors.js';
import type { FileChange } from '../git/index.js';

// Two levels up from this file is the package root, both from src/apps/ (tsx) and dist/apps/.
const templatesRoot = fileURLToPath(new URL('../../src/apps/templates/', import.meta.url));

export interface TemplateInfo {
  name: string;
  description: string;
}

export function listTemplates(): TemplateInfo[] {
  return readdirSync(templatesRoot)
    .filter((name) => statSync(join(templatesRoot, name)).isDirectory())
    .sort()
    .map((name) => {
      const meta = JSON.parse(readFileSync(join(templatesRoot, name, 'template.json'), 'utf8')) as {
        description: string;
      };
      return { name, description: meta.description };
    });
}

export function renderTemplate(
  name: string,
  values: { app: string; team: string },
): Record<string, FileChange> {
  if (!listTemplates().some((t) => t.name === name)) {
    throw new ValveError(
      'APP_TEMPLATE_UNKNOWN',
      `unknown template "${name}"; expected one of: ${listTemplates()
        .map((t) => t.name)
        .join(', ')}`,
    );
  }
  const dir = join(templatesRoot, name);
  const files: Record<string, FileChange> = {};
  const walk = (current: string) => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      const full = join(current, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) {
        const path = relative(dir, full);
        if (path === 'template.json') continue;
        const content = readFileSync(full, 'utf8')
          .replaceAll('{{app}}', values.app)
          .replaceAll('{{team}}', values.team);
        files[path] = { content, executable: (statSync(full).mode & 0o100) !== 0 };
      }
    }
  };
  walk(dir);
  return files;
}
