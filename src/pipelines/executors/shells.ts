import type { ScriptRequest } from './executor.js';

/**
 * The command line that runs a step's script file, as GitHub Actions runs it: `shell: bash` is
 * `bash --noprofile --norc -eo pipefail`, `shell: sh` is `sh -e`, and no shell given is
 * `bash -e`, falling back to `sh -e` where the image has no bash.
 */
export function shellCommand(shell: ScriptRequest['shell'], scriptFile: string): string[] {
  if (shell === 'bash') return ['bash', '--noprofile', '--norc', '-eo', 'pipefail', scriptFile];
  if (shell === 'sh') return ['sh', '-e', scriptFile];
  return [
    'sh',
    '-c',
    'if command -v bash >/dev/null 2>&1; then exec bash -e "$0"; else exec sh -e "$0"; fi',
    scriptFile,
  ];
}
