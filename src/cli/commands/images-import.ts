import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { Command } from 'commander';
import { CliError, loadCliConfig } from '../client.js';

interface ImportOptions {
  repo: string;
  tag: string;
  env?: string[];
  entrypoint?: string;
  cmd?: string;
  workdir?: string;
  user?: string;
  server?: string;
}

/** `["a","b"]` as JSON, else the words of a command line split on spaces. */
function commandList(value: string, flag: string): string[] {
  if (value.trim().startsWith('[')) {
    try {
      const parsed = JSON.parse(value) as unknown;
      if (Array.isArray(parsed) && parsed.every((item) => typeof item === 'string')) return parsed;
    } catch {
      // Reported below.
    }
    throw new CliError(`${flag}: expected a JSON array of strings, e.g. '["sh","-c","..."]'`);
  }
  return value.split(/\s+/).filter(Boolean);
}

/**
 * `valve images import <tarball> --repo team/name --tag t`: streams a root filesystem tarball
 * (.tar or .tar.gz) to the server, which stores it as a single-layer base image (the
 * air-gapped way to get one). Registers `images import`, creating `images` if needed.
 */
export function registerImagesImport(program: Command) {
  const images =
    program.commands.find((command) => command.name() === 'images') ??
    program.command('images').description("images in Valve's registry");
  images
    .command('import')
    .description('import a root filesystem tarball (.tar or .tar.gz) as a single-layer base image')
    .argument('<tarball>', 'the tarball, e.g. made with `tar -C rootfs -cf rootfs.tar .`')
    .requiredOption('--repo <team/name>', 'the repository to store it in')
    .requiredOption('--tag <tag>', 'the tag')
    .option('--env <KEY=VALUE...>', 'environment variables (PATH has a default)')
    .option('--entrypoint <command>', 'the entrypoint: words, or a JSON array')
    .option('--cmd <command>', 'the default command: words, or a JSON array')
    .option('--workdir <dir>', 'the working directory')
    .option('--user <user>', 'the user to run as')
    .option('--server <url>', 'the server (default: the one logged in to)')
    .action(async (tarball: string, options: ImportOptions) => {
      const login = loadCliConfig();
      if (!login) {
        throw new CliError(
          'not logged in: run `valve login --server <url> --username <name>` first',
        );
      }
      const match = /^([a-z0-9-]+)\/([a-z0-9][a-z0-9._-]*)$/.exec(options.repo);
      if (!match) throw new CliError(`--repo: expected <team>/<name>, got "${options.repo}"`);
      const env: Record<string, string> = {};
      for (const pair of options.env ?? []) {
        const eq = pair.indexOf('=');
        if (eq <= 0) throw new CliError(`--env: expected KEY=VALUE, got "${pair}"`);
        env[pair.slice(0, eq)] = pair.slice(eq + 1);
      }
      const config = {
        ...(Object.keys(env).length ? { env } : {}),
        ...(options.entrypoint
          ? { entrypoint: commandList(options.entrypoint, '--entrypoint') }
          : {}),
        ...(options.cmd ? { cmd: commandList(options.cmd, '--cmd') } : {}),
        ...(options.workdir ? { workingDir: options.workdir } : {}),
        ...(options.user ? { user: options.user } : {}),
      };
      const file = await stat(tarball).catch(() => null);
      if (!file?.isFile()) throw new CliError(`${tarball}: no such file`);

      const query = new URLSearchParams({ name: match[2]!, tag: options.tag });
      if (Object.keys(config).length) query.set('config', JSON.stringify(config));
      const server = options.server ?? login.server;
      const url = new URL(`/api/teams/${match[1]}/images/import?${query}`, server);
      const response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/octet-stream',
          'content-length': String(file.size),
          authorization: `Bearer ${login.token}`,
        },
        body: Readable.toWeb(createReadStream(tarball)) as ReadableStream,
        duplex: 'half',
      } as RequestInit).catch((error: unknown) => {
        throw new CliError(`cannot reach ${server}: ${(error as Error).message}`);
      });
      const answer = (await response.json().catch(() => ({}))) as {
        digest?: string;
        size?: number;
        error?: { code?: string; message?: string };
      };
      if (!response.ok) {
        throw new CliError(
          `${answer.error?.code ?? response.status}: ${answer.error?.message ?? response.statusText}`,
        );
      }
      console.log(
        `imported ${options.repo}:${options.tag} (${answer.digest}, ${answer.size} bytes)`,
      );
    });
}
