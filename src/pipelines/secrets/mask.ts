/**
 * Masks secret values in log lines. Output is masked line by line after chunks are joined into
 * lines, so a secret split across two writes is still caught; a multi-line secret is masked
 * line by line. Very short values are not masked (they would blank out ordinary text) and
 * cannot be stored either (see MIN_SECRET_LENGTH).
 */
export const MIN_SECRET_LENGTH = 3;
export const MASK = '***';

export class Masker {
  private values: string[] = [];

  add(value: string): void {
    for (const part of [value, ...value.split(/\r?\n/)]) {
      const trimmed = part.trim();
      if (trimmed.length >= MIN_SECRET_LENGTH && !this.values.includes(trimmed))
        this.values.push(trimmed);
    }
    // Longest first, so a secret containing another is masked whole.
    this.values.sort((a, b) => b.length - a.length);
  }

  mask(text: string): string {
    let out = text;
    for (const value of this.values) if (out.includes(value)) out = out.split(value).join(MASK);
    return out;
  }
}
