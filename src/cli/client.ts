/** The CLI's HTTP client: the saved login (server URL, username, API token) and JSON calls. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export interface CliConfig {
  server: string;
  username: string;
  token: string;
}

export const configFile = () =>
  process.env.VALVE_CONFIG ?? join(homedir(), '.config', 'valve', 'config.json');

export function loadCliConfig(): CliConfig | null {
  try {
    return JSON.parse(readFileSync(configFile(), 'utf8')) as CliConfig;
  } catch {
    return null;
  }
}

export function saveCliConfig(config: CliConfig): void {
  const file = configFile();
  mkdirSync(dirname(file), { recursive: true });
  // The token is a credential: readable by its owner only.
  writeFileSync(file, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
}

export class CliError extends Error {}

export class ApiClient {
  constructor(
    readonly server: string,
    private readonly token?: string,
  ) {}

  static fromConfig(serverFlag?: string): ApiClient {
    const config = loadCliConfig();
    if (!config)
      throw new CliError('not logged in: run `valve login --server <url> --username <name>` first');
    return new ApiClient(serverFlag ?? config.server, config.token);
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.raw(method, path, body);
    const text = await response.text();
    const data = text ? (JSON.parse(text) as unknown) : undefined;
    if (!response.ok) {
      const error = (data as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new CliError(
        `${error?.code ?? response.status}: ${error?.message ?? response.statusText}`,
      );
    }
    return data as T;
  }

  raw(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    return fetch(new URL(path, this.server), {
      method,
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    }).catch((error: unknown) => {
      throw new CliError(
        `cannot reach ${this.server}: ${error instanceof Error ? ((error.cause as Error)?.message ?? error.message) : String(error)}`,
      );
    });
  }

  /** Reads a Server-Sent Events stream, calling onEvent for each event until it ends. */
  async events(path: string, onEvent: (event: string, data: string) => void): Promise<void> {
    const response = await this.raw('GET', path, undefined, { accept: 'text/event-stream' });
    if (!response.ok || !response.body)
      throw new CliError(`${response.status}: cannot follow ${path}`);
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of response.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data.push(line.slice(6));
        }
        if (data.length) onEvent(event, data.join('\n'));
      }
    }
  }
}

export interface AppRef {
  team: string;
  app: string;
}
export interface RunRef extends AppRef {
  number: number;
}

/** "team/app" from an argument. */
export function parseAppRef(value: string): AppRef {
  const match = /^([a-z0-9-]+)\/([a-z0-9-]+)$/.exec(value);
  if (!match) throw new CliError(`app: expected <team>/<app>, got "${value}"`);
  return { team: match[1]!, app: match[2]! };
}

/** A run number from an argument ("12" or "#12"). */
export function parseRunNumber(value: string): number {
  const number = Number(value.replace(/^#/, ''));
  if (!Number.isInteger(number) || number < 1)
    throw new CliError(`run: expected a run number, got "${value}"`);
  return number;
}

export const appApiPath = (ref: AppRef) => `/api/apps/${ref.team}/${ref.app}`;
export const runApiPath = (ref: RunRef) => `${appApiPath(ref)}/runs/${ref.number}`;

export function table(rows: Record<string, unknown>[], columns: string[]): string {
  const cells = [columns, ...rows.map((row) => columns.map((c) => String(row[c] ?? '')))];
  const widths = columns.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
