import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { parseJUnit, totals, type TestSuite, type Totals } from './junit.js';
import { defineStep } from './step.js';
import { normalizePatterns, selectFiles, splitList } from './workspace-files.js';

/** Bounds that keep one report's summary readable (GitHub caps a step summary at 1 MiB). */
export const reportLimits = {
  /** Largest XML file read. */
  fileBytes: 64 * 1024 * 1024,
  /** Failed cases listed with their message. */
  failedCases: 50,
  messageChars: 300,
  detailLines: 20,
} as const;

/**
 * Reads JUnit XML files, adds a summary (totals, one row per suite, the failed cases with their
 * message) to the run, and fails the step when tests failed.
 */
export const testReportStep = defineStep({
  name: 'test-report',
  description: 'Summarize JUnit XML test results and fail on failed tests.',
  inputs: z.strictObject({
    path: z
      .string()
      .transform(splitList)
      .refine((paths) => paths.length > 0, 'expected at least one path or glob'),
    'fail-on-failure': z.enum(['true', 'false']).default('true'),
    'if-no-files-found': z.enum(['warn', 'error', 'ignore']).default('error'),
    title: z.string().min(1).max(200).default('Test results'),
  }),
  async run(context, inputs) {
    const patterns = normalizePatterns(context.workspace, inputs.path, 'with.path');
    const { entries } = await selectFiles(context.workspace, patterns, {
      dot: false,
      what: 'with.path',
      signal: context.signal,
    });
    const files = entries.filter((entry) => entry.type === 'file');
    if (files.length === 0) {
      const message = `no test report matches ${inputs.path.join(' ')}`;
      if (inputs['if-no-files-found'] === 'error') throw new Error(message);
      if (inputs['if-no-files-found'] === 'warn') context.log(`warning: ${message}`);
      return { total: '0', passed: '0', failed: '0', skipped: '0' };
    }
    const suites: TestSuite[] = [];
    for (const file of files) {
      if (file.size > reportLimits.fileBytes) {
        throw new Error(`${file.path}: ${file.size} bytes, more than a report may have (64 MiB)`);
      }
      suites.push(...parseJUnit(await readFile(file.source, 'utf8'), file.path));
    }
    const sum = totals(suites);
    context.summary(renderReport(inputs.title, suites, sum));
    context.log(
      `${files.length} report(s): ${sum.total} tests, ${sum.passed} passed, ${sum.failed} failed, ${sum.skipped} skipped`,
    );
    if (sum.failed > 0 && inputs['fail-on-failure'] === 'true') {
      const first = suites.flatMap((suite) => suite.cases).find((c) => c.status === 'failed')!;
      throw new Error(
        `${sum.failed} of ${sum.total} tests failed, first ${caseName(first)}${first.message ? `: ${clip(first.message, 200)}` : ''}`,
      );
    }
    return {
      total: String(sum.total),
      passed: String(sum.passed),
      failed: String(sum.failed),
      skipped: String(sum.skipped),
    };
  },
});

/** The Markdown summary: a headline, a table of suites, and the failed cases. */
export function renderReport(title: string, suites: readonly TestSuite[], sum: Totals): string {
  const verdict = sum.failed > 0 ? 'failed' : 'passed';
  const lines = [
    `### ${cell(title)}: ${verdict}`,
    '',
    `**${sum.total}** tests: **${sum.passed}** passed, **${sum.failed}** failed, **${sum.skipped}** skipped (${seconds(sum.time)})`,
    '',
    '| suite | file | tests | passed | failed | skipped | time |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const suite of suites) {
    const s = totals([suite]);
    lines.push(
      `| ${cell(suite.name)} | ${cell(suite.file)} | ${s.total} | ${s.passed} | ${s.failed} | ${s.skipped} | ${seconds(s.time)} |`,
    );
  }
  const failed = suites.flatMap((suite) =>
    suite.cases.filter((c) => c.status === 'failed').map((c) => ({ suite, testCase: c })),
  );
  if (failed.length > 0) {
    lines.push('', '#### Failed tests', '');
    for (const { suite, testCase } of failed.slice(0, reportLimits.failedCases)) {
      const message = testCase.message
        ? `: ${cell(clip(testCase.message, reportLimits.messageChars))}`
        : '';
      lines.push(`- **${cell(caseName(testCase))}** (${cell(suite.name)})${message}`);
      const details = (testCase.details ?? '').split('\n').slice(0, reportLimits.detailLines);
      if (details.join('').trim() && details.join('\n') !== testCase.message) {
        lines.push(...fenced(details.join('\n')).map((line) => `  ${line}`));
      }
    }
    if (failed.length > reportLimits.failedCases) {
      lines.push(`- ... and ${failed.length - reportLimits.failedCases} more`);
    }
  }
  return `${lines.join('\n')}\n`;
}

function caseName(testCase: { name: string; classname: string }): string {
  return testCase.classname ? `${testCase.classname} › ${testCase.name}` : testCase.name;
}

/** Safe inside a table cell or a list item: no pipes, line breaks or HTML. */
function cell(value: string): string {
  return value
    .replace(/[\r\n]+/g, ' ')
    .replace(/\\/g, '\\\\')
    .replace(/\|/g, '\\|')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;');
}

/** A code block whose fence is longer than any backtick run in the text. */
function fenced(text: string): string[] {
  const longest = Math.max(2, ...[...text.matchAll(/`+/g)].map((run) => run[0].length));
  const fence = '`'.repeat(longest + 1);
  return [fence, ...text.split('\n'), fence];
}

function clip(value: string, max: number): string {
  return value.length > max ? `${value.slice(0, max - 1)}…` : value;
}

function seconds(value: number): string {
  return `${value.toFixed(value < 10 ? 2 : 1)} s`;
}
