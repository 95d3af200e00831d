/**
 * GitHub Actions' file commands and workflow commands, as steps use them: `$GITHUB_OUTPUT`,
 * `$GITHUB_ENV`, `$GITHUB_PATH` and `$GITHUB_STEP_SUMMARY` files, and `::add-mask::value` lines.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** `name=value` lines and `name<<DELIM` ... `DELIM` blocks. */
export function parseKeyValueFile(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const body: string[] = [];
      while (++i < lines.length && lines[i]!.replace(/\r$/, '') !== heredoc[2])
        body.push(lines[i]!.replace(/\r$/, ''));
      values[heredoc[1]!] = body.join('\n');
    } else if (line.includes('=')) {
      values[line.slice(0, line.indexOf('='))] = line.slice(line.indexOf('=') + 1);
    }
  }
  return values;
}

export interface StepFiles {
  env: Record<string, string>;
  read(): {
    outputs: Record<string, string>;
    env: Record<string, string>;
    path: string[];
    summary: string;
  };
  remove(): void;
}

/** Fresh, empty command files for one step, in the job's temp directory. */
export function stepFiles(tempDir: string, stepKey: string): StepFiles {
  const dir = join(tempDir, `step-${stepKey.replace(/[^A-Za-z0-9_-]/g, '_')}`);
  mkdirSync(dir, { recursive: true });
  const files = {
    GITHUB_OUTPUT: 'output',
    GITHUB_ENV: 'env',
    GITHUB_PATH: 'path',
    GITHUB_STEP_SUMMARY: 'summary.md',
  };
  const env: Record<string, string> = {};
  for (const [name, file] of Object.entries(files)) {
    writeFileSync(join(dir, file), '');
    env[name] = join(dir, file);
  }
  env.VALVE_OUTPUT = env.GITHUB_OUTPUT!;
  const read = (file: string) => readFileSync(join(dir, file), 'utf8');
  return {
    env,
    read: () => ({
      outputs: parseKeyValueFile(read('output')),
      env: parseKeyValueFile(read('env')),
      path: read('path')
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean),
      summary: read('summary.md'),
    }),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A `::add-mask::value` line: the value to mask from now on. */
export function addMaskCommand(line: string): string | null {
  const match = /^::add-mask::(.*)$/.exec(line.trim());
  return match ? match[1]! : null;
}
