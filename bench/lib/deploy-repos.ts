/**
 * Many deploy repos at once, for benches: copies of one repo Valve made, with its names and
 * pins replaced, written as git objects directly (no git process per repo). Making 1,000 deploy
 * repos through the deploy service spawns ~20 git processes each, which takes longer than the
 * bench itself on a small machine; the copies hold the same commits, trees and files Valve
 * would have written (the caller checks one against a repo Valve made).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';

interface TemplateFile {
  mode: string;
  path: string;
  content: string;
}

interface TemplateCommit {
  /** The commit object without its `tree` and `parent` lines. */
  rest: string;
  files: TemplateFile[];
}

export interface DeployRepoTemplate {
  gitDir: string;
  branch: string;
  commits: TemplateCommit[];
}

function gitText(gitDir: string, args: string[]): string {
  const result = spawnSync('git', ['--git-dir', gitDir, ...args], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`git ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/** Reads a repo's history on `branch` (oldest first) with every file of each commit. */
export function readTemplate(gitDir: string, branch = 'main'): DeployRepoTemplate {
  const commits = gitText(gitDir, ['rev-list', '--reverse', branch])
    .split('\n')
    .filter(Boolean)
    .map((id) => {
      const raw = gitText(gitDir, ['cat-file', 'commit', id]);
      const rest = raw
        .split('\n')
        .filter((line, i, lines) => {
          const inHeader = lines.slice(0, i).every((l) => l !== '');
          return !(inHeader && (line.startsWith('tree ') || line.startsWith('parent ')));
        })
        .join('\n');
      const files = gitText(gitDir, ['ls-tree', '-r', '-z', id])
        .split('\0')
        .filter(Boolean)
        .map((entry) => {
          const [meta = '', path = ''] = entry.split('\t');
          const [mode = '', type = '', object = ''] = meta.split(' ');
          if (type !== 'blob') throw new Error(`template ${path}: ${type} entries are not copied`);
          return { mode, path, content: gitText(gitDir, ['cat-file', 'blob', object]) };
        });
      return { rest, files };
    });
  return { gitDir, branch, commits };
}

function writeObject(gitDir: string, type: 'blob' | 'tree' | 'commit', content: Buffer): string {
  const object = Buffer.concat([Buffer.from(`${type} ${content.length}\0`), content]);
  const id = createHash('sha1').update(object).digest('hex');
  const dir = join(gitDir, 'objects', id.slice(0, 2));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, id.slice(2)), deflateSync(object));
  return id;
}

type Node = { mode: string; id: string } | Map<string, Node>;

/** Writes the tree of `files` (and its subtrees); returns the root tree's id. */
function writeTree(gitDir: string, files: { mode: string; path: string; id: string }[]): string {
  const root = new Map<string, Node>();
  for (const file of files) {
    const parts = file.path.split('/');
    let dir = root;
    for (const part of parts.slice(0, -1)) {
      let next = dir.get(part);
      if (!(next instanceof Map)) dir.set(part, (next = new Map()));
      dir = next;
    }
    dir.set(parts.at(-1)!, { mode: file.mode, id: file.id });
  }
  const write = (dir: Map<string, Node>): string => {
    const entries = [...dir].map(([name, node]) =>
      node instanceof Map
        ? { name, mode: '40000', id: write(node), sortKey: `${name}/` }
        : { name, mode: node.mode, id: node.id, sortKey: name },
    );
    // Git orders entries by name, a tree's name as if it ended in '/'.
    entries.sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
    return writeObject(
      gitDir,
      'tree',
      Buffer.concat(
        entries.map((e) =>
          Buffer.concat([Buffer.from(`${e.mode} ${e.name}\0`), Buffer.from(e.id, 'hex')]),
        ),
      ),
    );
  };
  return write(root);
}

/**
 * A copy of the template at `gitDir`, with `replace` applied to every file and commit message:
 * the repo's settings are copied, the objects written anew. Returns the branch's commit and
 * the root tree of each commit.
 */
export function writeDeployRepo(
  template: DeployRepoTemplate,
  gitDir: string,
  replace: (text: string) => string,
): { head: string; trees: string[] } {
  rmSync(gitDir, { recursive: true, force: true });
  cpSync(template.gitDir, gitDir, {
    recursive: true,
    filter: (source) => !/\/objects\/[0-9a-f]{2}(\/|$)|\/refs\/heads\/|\/logs(\/|$)/.test(source),
  });
  let parent: string | null = null;
  const trees: string[] = [];
  for (const commit of template.commits) {
    const tree = writeTree(
      gitDir,
      commit.files.map((file) => ({
        mode: file.mode,
        path: file.path,
        id: writeObject(gitDir, 'blob', Buffer.from(replace(file.content))),
      })),
    );
    trees.push(tree);
    parent = writeObject(
      gitDir,
      'commit',
      Buffer.from(`tree ${tree}\n${parent ? `parent ${parent}\n` : ''}${replace(commit.rest)}`),
    );
  }
  mkdirSync(join(gitDir, 'refs', 'heads'), { recursive: true });
  writeFileSync(join(gitDir, 'refs', 'heads', template.branch), `${parent}\n`);
  return { head: parent!, trees };
}

/** `<root tree> <subject>` of each commit on `branch`, oldest first (to compare a copy with the real thing). */
export function historyOf(gitDir: string, branch = 'main'): string[] {
  return gitText(gitDir, ['log', '--reverse', '--format=%T %s', branch])
    .split('\n')
    .filter(Boolean);
}
