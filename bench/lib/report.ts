/** Numbers and tables as the benches print them. */

export const median = (values: number[]): number => {
  if (values.length === 0) throw new Error('median of no values');
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
};

/** `812.3 ms` under a second, `2.41 s` from one up. */
export const time = (ms: number): string =>
  ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;

export const mb = (kb: number): string => `${(kb / 1024).toFixed(1)} MB`;

export const percent = (part: number, whole: number): string =>
  `${((part / whole) * 100).toFixed(0)}%`;

/** A table: the first row is the header; the first column is left-aligned, the rest right-aligned. */
export function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  const line = (row: string[]) =>
    `  ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')}`;
  console.log(line(rows[0]!));
  console.log(`  ${widths.map((w) => '-'.repeat(w)).join('  ')}`);
  for (const row of rows.slice(1)) console.log(line(row));
}
