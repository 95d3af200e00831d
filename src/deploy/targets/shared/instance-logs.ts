import type { InstanceState } from '../target.js';

/** What `logs()` needs of an instance. */
export interface LoggedInstance {
  readonly id: string;
  readonly state: InstanceState;
  readonly record: { role: 'active' | 'candidate' | 'retiring'; image: { reference: string } };
}

const roleOrder = { active: 0, candidate: 1, retiring: 2 } as const;

/**
 * The `logs()` answer: one `==> <id> (<state>, <runs as>, <image>) <==` block per instance,
 * active ones first. `read` gives an instance's last lines and what it runs as (`pid 12`).
 */
export async function instanceLogBlocks<I extends LoggedInstance>(
  instances: I[],
  read: (instance: I) => Promise<{ runsAs: string; lines: string[] }>,
): Promise<string> {
  const sorted = [...instances].sort((a, b) => roleOrder[a.record.role] - roleOrder[b.record.role]);
  const blocks = await Promise.all(
    sorted.map(async (instance) => {
      const { runsAs, lines } = await read(instance);
      const header = `==> ${instance.id} (${instance.state}, ${runsAs}, ${instance.record.image.reference}) <==`;
      return [header, ...lines].join('\n');
    }),
  );
  return blocks.join('\n\n') + (blocks.length > 0 ? '\n' : '');
}
