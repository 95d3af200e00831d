import type { ScriptRequest } from './executor.js';

/** The command line that runs a step's script file: the same flags GitHub Actions uses. */
export function shellCommand(shell: ScriptRequest['shell'], scriptFile: string): string[] {
  return shell === 'bash'
    ? ['bash', '--noprofile', '--norc', '-eo', 'pipefail', scriptFile]
    : ['sh', '-e', scriptFile];
}
