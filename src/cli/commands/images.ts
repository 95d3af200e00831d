import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { ApiClient, CliError, table } from '../client.js';
import {
  ago,
  formatBytes,
  platformLabel,
  pushedByLabel,
  shortDigest,
  type ImageManifestView,
  type ImageRepositoryView,
  type ImageTagView,
} from '../views.js';

interface TeamOptions {
  team?: string;
  json?: boolean;
}

const NAME = /^[a-z0-9-]+$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;

/** An image argument: `[team/]app` followed by `:tag`, `@sha256:...` or `:sha256:...`. */
interface ImageArg {
  team?: string;
  app: string;
  reference?: string;
}

export function parseImageArg(value: string): ImageArg {
  const match = /^(?:([a-z0-9-]+)\/)?([a-z0-9-]+)(?:[:@](.+))?$/.exec(value);
  const reference = match?.[3];
  if (!match || (reference !== undefined && !TAG.test(reference) && !DIGEST.test(reference))) {
    throw new CliError(
      `image: expected [team/]app, [team/]app:tag or [team/]app@sha256:<digest>, got "${value}"`,
    );
  }
  return { team: match[1], app: match[2]!, reference };
}

/**
 * The team an image argument means: its own `team/`, else `--team`, else the caller's only
 * team (asked from the server).
 */
async function resolveTeam(
  client: ApiClient,
  image: { team?: string },
  options: TeamOptions,
): Promise<string> {
  if (image.team && options.team && image.team !== options.team) {
    throw new CliError(`give the team once: ${image.team}/... or --team ${options.team}`);
  }
  const named = image.team ?? options.team;
  if (named) {
    if (!NAME.test(named)) throw new CliError(`--team: expected a team name, got "${named}"`);
    return named;
  }
  const me = await client.request<{ teams: { team: string; status: string }[] }>('GET', '/api/me');
  const teams = me.teams.filter((t) => t.status === 'active').map((t) => t.team);
  if (teams.length === 1) return teams[0]!;
  if (teams.length === 0) throw new CliError('you are not an active member of any team');
  throw new CliError(
    `you are in several teams (${teams.join(', ')}): name one with <team>/<app> or --team`,
  );
}

const imagesPath = (team: string, app?: string) =>
  `/api/teams/${team}/images${app ? `/${app}` : ''}`;

const printJson = (value: unknown) => console.log(JSON.stringify(value, null, 2));

/**
 * `--team` and `--json` are options of `images` and of its subcommands alike: commander may
 * hand them to `images` wherever they are written, so subcommands read them with their
 * parents' (`optsWithGlobals`).
 */
export function registerImages(program: Command) {
  // `images import` (images-import.ts) may have made the command already.
  const images = (
    program.commands.find((command) => command.name() === 'images') ?? program.command('images')
  )
    .description(
      "your team's image repositories, or with an app the tags of its repository (digest, size, platforms, who pushed)",
    )
    .argument('[app]', 'an app, as <app> or <team>/<app>')
    .option('--team <team>', 'the team (default: your only team)')
    .option('--json', 'print the API answer as JSON')
    .action(async (arg: string | undefined, options: TeamOptions) => {
      const client = ApiClient.fromConfig();
      if (arg === undefined) return listRepositories(client, options);
      const image = parseImageArg(arg);
      if (image.reference) {
        throw new CliError(`to see one image, run: valve images show ${arg}`);
      }
      return listTags(client, await resolveTeam(client, image, options), image.app, options);
    });

  images
    .command('show')
    .description("an image's layers and config, or a multi-platform index's images")
    .argument('<image>', '[team/]app:tag or [team/]app@sha256:<digest>')
    .option('--team <team>', 'the team (default: your only team)')
    .option('--json', 'print the API answer as JSON')
    .action(async (arg: string, _options: TeamOptions, command: Command) => {
      const options = command.optsWithGlobals<TeamOptions>();
      const image = parseImageArg(arg);
      if (!image.reference) throw new CliError(`image: name a tag or digest, e.g. ${arg}:latest`);
      const client = ApiClient.fromConfig();
      const team = await resolveTeam(client, image, options);
      const manifest = await client.request<ImageManifestView>(
        'GET',
        `${imagesPath(team, image.app)}/manifests/${encodeURIComponent(image.reference)}`,
      );
      if (options.json) return printJson(manifest);
      printManifest(manifest);
    });

  images
    .command('rm')
    .alias('delete')
    .description('delete a tag (the image stays pullable by digest); asks first unless --yes')
    .argument('<image>', '[team/]app:tag')
    .option('--team <team>', 'the team (default: your only team)')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (arg: string, _options: unknown, command: Command) => {
      const options = command.optsWithGlobals<TeamOptions & { yes?: boolean }>();
      const image = parseImageArg(arg);
      if (!image.reference || DIGEST.test(image.reference)) {
        throw new CliError(`image: name the tag to delete, e.g. ${image.app}:v1`);
      }
      const client = ApiClient.fromConfig();
      const team = await resolveTeam(client, image, options);
      const name = `${team}/${image.app}:${image.reference}`;
      if (!options.yes) {
        if (!process.stdin.isTTY) {
          throw new CliError(`not deleting ${name} without confirmation: pass --yes`);
        }
        if (!(await confirm(`Delete tag ${name}? [y/N] `))) {
          throw new CliError(`kept ${name}`);
        }
      }
      await client.request(
        'DELETE',
        `${imagesPath(team, image.app)}/tags/${encodeURIComponent(image.reference)}`,
      );
      console.log(`deleted tag ${name}`);
    });
}

async function listRepositories(client: ApiClient, options: TeamOptions) {
  const team = await resolveTeam(client, {}, options);
  const repositories = await client.request<ImageRepositoryView[]>('GET', imagesPath(team));
  if (options.json) return printJson(repositories);
  if (repositories.length === 0) return console.log(`no images in team ${team} yet`);
  console.log(
    table(
      repositories.map((r) => ({
        REPOSITORY: r.repository,
        TAGS: r.tagCount,
        SIZE: formatBytes(r.size),
        'LAST PUSH': r.lastPush
          ? `${ago(r.lastPush.at)}${r.lastPush.tag ? ` (${r.lastPush.tag})` : ''}`
          : '',
        BY: pushedByLabel(r.lastPush),
      })),
      ['REPOSITORY', 'TAGS', 'SIZE', 'LAST PUSH', 'BY'],
    ),
  );
}

async function listTags(client: ApiClient, team: string, app: string, options: TeamOptions) {
  const tags = await client.request<ImageTagView[]>('GET', `${imagesPath(team, app)}/tags`);
  if (options.json) return printJson(tags);
  if (tags.length === 0) return console.log(`no tags in ${team}/${app} yet`);
  console.log(
    table(
      tags.map((t) => ({
        TAG: t.tag,
        DIGEST: shortDigest(t.digest),
        SIZE: formatBytes(t.size),
        PLATFORMS: t.platforms.map(platformLabel).join(','),
        CREATED: t.created ? t.created.replace(/\.\d+Z$/, 'Z') : '',
        'PUSHED BY': pushedByLabel(t.pushed),
        AGE: t.pushed ? ago(t.pushed.at) : '',
      })),
      ['TAG', 'DIGEST', 'SIZE', 'PLATFORMS', 'CREATED', 'PUSHED BY', 'AGE'],
    ),
  );
}

function printManifest(m: ImageManifestView) {
  const line = (label: string, value: string) => console.log(`${`${label}:`.padEnd(12)}${value}`);
  console.log(`${m.repository}@${m.digest}`);
  line('tags', m.tags.join(', ') || '(none: pull by digest)');
  line('kind', `${m.kind === 'index' ? 'multi-platform index' : 'image'} (${m.mediaType})`);
  line('size', `${formatBytes(m.size)} (${m.size} bytes)`);
  line('platforms', m.platforms.map(platformLabel).join(', ') || '-');
  line('created', m.created ?? '-');
  line(
    'pushed',
    m.pushed ? `${pushedByLabel(m.pushed)}, ${ago(m.pushed.at)} (${m.pushed.at})` : 'unknown',
  );
  if (m.config) {
    const c = m.config;
    console.log('\nconfig:');
    const item = (label: string, value: string) =>
      console.log(`  ${`${label}:`.padEnd(12)}${value}`);
    item('entrypoint', c.entrypoint ? JSON.stringify(c.entrypoint) : '-');
    item('cmd', c.cmd ? JSON.stringify(c.cmd) : '-');
    item('workdir', c.workdir ?? '-');
    item('user', c.user ?? '-');
    item('ports', c.ports.join(', ') || '-');
    item(
      'os/arch',
      c.os && c.architecture
        ? platformLabel({
            ...c,
            os: c.os,
            architecture: c.architecture,
            variant: c.variant ?? undefined,
          })
        : '-',
    );
    for (const entry of c.env) item('env', entry);
    for (const [key, value] of Object.entries(c.labels)) item('label', `${key}=${value}`);
  }
  if (m.kind === 'image') {
    console.log('\nlayers:');
    console.log(
      indent(
        table(
          m.layers.map((layer, i) => ({
            '#': i + 1,
            DIGEST: layer.digest,
            'MEDIA TYPE': layer.mediaType,
            SIZE: formatBytes(layer.size),
          })),
          ['#', 'DIGEST', 'MEDIA TYPE', 'SIZE'],
        ),
      ),
    );
  } else {
    console.log('\nimages:');
    console.log(
      indent(
        table(
          m.manifests.map((child) => ({
            PLATFORM: child.platform ? platformLabel(child.platform) : '?',
            DIGEST: child.digest,
            SIZE: formatBytes(child.size),
          })),
          ['PLATFORM', 'DIGEST', 'SIZE'],
        ),
      ),
    );
  }
  if (m.referrers && m.referrers.length > 0) {
    console.log('\nreferrers:');
    console.log(
      indent(
        table(
          m.referrers.map((r) => ({
            TYPE: r.artifactType ?? r.mediaType,
            DIGEST: r.digest,
            SIZE: formatBytes(r.size),
          })),
          ['TYPE', 'DIGEST', 'SIZE'],
        ),
      ),
    );
  }
}

const indent = (text: string) =>
  text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');

function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  return new Promise((resolve) =>
    rl.question(question, (answer) => {
      rl.close();
      resolve(/^y(es)?$/i.test(answer.trim()));
    }),
  );
}
