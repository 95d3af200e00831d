/**
 * The small Markdown that run summaries are written in (GitHub's `$GITHUB_STEP_SUMMARY` habits):
 * headings, paragraphs, lists, fenced code, pipe tables, quotes, rules; inline code, bold,
 * italics and links. Parsed into plain data that `components/Markdown.tsx` renders as React
 * elements, so no HTML from a step ever reaches the page as markup.
 */

export type Inline =
  | { kind: 'text'; text: string }
  | { kind: 'code'; text: string }
  | { kind: 'strong'; children: Inline[] }
  | { kind: 'em'; children: Inline[] }
  | { kind: 'link'; href: string; children: Inline[] }
  | { kind: 'break' };

export type Block =
  | { kind: 'heading'; level: 1 | 2 | 3 | 4 | 5 | 6; children: Inline[] }
  | { kind: 'paragraph'; children: Inline[] }
  | { kind: 'list'; ordered: boolean; start: number; items: Inline[][] }
  | { kind: 'code'; lang: string; text: string }
  | {
      kind: 'table';
      align: ('left' | 'center' | 'right' | null)[];
      head: Inline[][];
      rows: Inline[][][];
    }
  | { kind: 'quote'; children: Block[] }
  | { kind: 'rule' };

const heading = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const fence = /^ {0,3}(```+|~~~+)\s*([\w+-]*)/;
const bullet = /^ {0,3}[-*+]\s+(.*)$/;
const numbered = /^ {0,3}(\d{1,9})[.)]\s+(.*)$/;
const rule = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const quote = /^ {0,3}>\s?(.*)$/;
const tableDivider = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

export function parseMarkdown(source: string): Block[] {
  const lines = source.replace(/\r\n?/g, '\n').split('\n');
  const blocks: Block[] = [];
  let i = 0;
  const startsBlock = (line: string, next: string | undefined) =>
    heading.test(line) ||
    fence.test(line) ||
    bullet.test(line) ||
    numbered.test(line) ||
    rule.test(line) ||
    quote.test(line) ||
    (line.includes('|') && next !== undefined && tableDivider.test(next));

  while (i < lines.length) {
    const line = lines[i] as string;
    if (!line.trim()) {
      i++;
      continue;
    }
    let match: RegExpExecArray | null;
    if ((match = fence.exec(line))) {
      const marker = match[1] as string;
      const body: string[] = [];
      i++;
      while (i < lines.length && !(lines[i] as string).trim().startsWith(marker)) {
        body.push(lines[i] as string);
        i++;
      }
      i++; // the closing fence (or the end)
      blocks.push({ kind: 'code', lang: match[2] ?? '', text: body.join('\n') });
    } else if ((match = heading.exec(line))) {
      const level = (match[1] as string).length as 1 | 2 | 3 | 4 | 5 | 6;
      blocks.push({ kind: 'heading', level, children: parseInline(match[2] ?? '') });
      i++;
    } else if (rule.test(line)) {
      blocks.push({ kind: 'rule' });
      i++;
    } else if (line.includes('|') && tableDivider.test(lines[i + 1] ?? '')) {
      const head = splitRow(line);
      const align = splitRow(lines[i + 1] as string).map((cell) => {
        const left = cell.startsWith(':');
        const right = cell.endsWith(':');
        return left && right ? 'center' : right ? 'right' : left ? 'left' : null;
      });
      i += 2;
      const rows: Inline[][][] = [];
      while (
        i < lines.length &&
        (lines[i] as string).includes('|') &&
        (lines[i] as string).trim()
      ) {
        const cells = splitRow(lines[i] as string);
        rows.push(head.map((_, c) => parseInline(cells[c] ?? '')));
        i++;
      }
      blocks.push({ kind: 'table', align, head: head.map((cell) => parseInline(cell)), rows });
    } else if (quote.test(line)) {
      const body: string[] = [];
      while (i < lines.length && (match = quote.exec(lines[i] as string))) {
        body.push(match[1] ?? '');
        i++;
      }
      blocks.push({ kind: 'quote', children: parseMarkdown(body.join('\n')) });
    } else if (bullet.test(line) || numbered.test(line)) {
      const ordered = !bullet.test(line);
      const pattern = ordered ? numbered : bullet;
      const start = ordered ? Number(numbered.exec(line)?.[1] ?? 1) : 1;
      const items: string[] = [];
      while (i < lines.length) {
        const current = lines[i] as string;
        const item = pattern.exec(current);
        if (item) items.push(item[ordered ? 2 : 1] ?? '');
        else if (current.trim() && /^\s+/.test(current) && items.length)
          items[items.length - 1] += ` ${current.trim()}`; // a continuation line of the item
        else break;
        i++;
      }
      blocks.push({ kind: 'list', ordered, start, items: items.map((item) => parseInline(item)) });
    } else {
      const body: string[] = [];
      while (i < lines.length && (lines[i] as string).trim()) {
        if (body.length && startsBlock(lines[i] as string, lines[i + 1])) break;
        body.push(lines[i] as string);
        i++;
      }
      blocks.push({ kind: 'paragraph', children: parseInline(body.join('\n')) });
    }
  }
  return blocks;
}

/** "| a | b |" -> ["a", "b"]; `\|` stays a literal bar inside a cell. */
function splitRow(line: string): string[] {
  let text = line.trim();
  if (text.startsWith('|')) text = text.slice(1);
  if (text.endsWith('|') && !text.endsWith('\\|')) text = text.slice(0, -1);
  return text.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, '|'));
}

/** Web links and relative ones only: never `javascript:`, `data:` or other schemes. */
export function safeHref(href: string): string | null {
  const trimmed = href.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(trimmed);
  if (scheme) return /^https?$/i.test(scheme[1] as string) ? trimmed : null;
  return trimmed || null;
}

export function parseInline(text: string): Inline[] {
  const out: Inline[] = [];
  let plain = '';
  const flush = () => {
    if (plain) out.push({ kind: 'text', text: plain });
    plain = '';
  };
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    let match: RegExpExecArray | null;
    // snake_case_names are not emphasis (as on GitHub).
    const intraword = rest[0] === '_' && i > 0 && /\w/.test(text[i - 1] as string);
    if (rest[0] === '\\' && rest.length > 1 && /[\\`*_[\]()#|>!-]/.test(rest[1] as string)) {
      plain += rest[1];
      i += 2;
    } else if ((match = /^(`+)([\s\S]*?[^`])\1(?!`)/.exec(rest))) {
      flush();
      out.push({ kind: 'code', text: (match[2] ?? '').trim() });
      i += match[0].length;
    } else if (!intraword && (match = /^(\*\*|__)(?=\S)([\s\S]*?\S)\1/.exec(rest))) {
      flush();
      out.push({ kind: 'strong', children: parseInline(match[2] ?? '') });
      i += match[0].length;
    } else if (!intraword && (match = /^(\*|_)(?=\S)([\s\S]*?\S)\1(?![*_])/.exec(rest))) {
      flush();
      out.push({ kind: 'em', children: parseInline(match[2] ?? '') });
      i += match[0].length;
    } else if ((match = /^\[([^\]]*)\]\(([^)\s]*)(?:\s+"[^"]*")?\)/.exec(rest))) {
      const href = safeHref(match[2] ?? '');
      flush();
      const children = parseInline(match[1] ?? '');
      if (href) out.push({ kind: 'link', href, children });
      else out.push(...children);
      i += match[0].length;
    } else if ((match = /^ {2,}\n|^\\\n/.exec(rest))) {
      flush();
      out.push({ kind: 'break' });
      i += match[0].length;
    } else {
      plain += rest[0];
      i++;
    }
  }
  flush();
  return out;
}
