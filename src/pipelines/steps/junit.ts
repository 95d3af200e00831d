import { XMLParser, XMLValidator } from 'fast-xml-parser';

/**
 * JUnit XML, the format most test runners can write (surefire, gradle, pytest, jest-junit,
 * go-junit-report, mocha-junit-reporter): `<testsuites>` or a lone `<testsuite>`, suites
 * possibly nested, `<testcase>` with `<failure>`, `<error>` or `<skipped>`. Counts come from
 * the test cases themselves, not from the suites' attributes, which tools fill in unevenly.
 */

export type CaseStatus = 'passed' | 'failed' | 'skipped';

export interface TestCase {
  name: string;
  classname: string;
  status: CaseStatus;
  /** Seconds, 0 when absent. */
  time: number;
  /** For failures and errors: the message attribute, else the first line of the text. */
  message?: string;
  /** For failures and errors: the element's text (usually a stack trace). */
  details?: string;
}

export interface TestSuite {
  name: string;
  /** The file it came from, workspace-relative. */
  file: string;
  cases: TestCase[];
  time: number;
}

export interface Totals {
  total: number;
  passed: number;
  failed: number;
  skipped: number;
  time: number;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  textNodeName: '#text',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  isArray: (name) => ['testsuite', 'testcase', 'failure', 'error', 'skipped'].includes(name),
});

type XmlNode = Record<string, unknown>;

/** Parses one report; errors name the file, and the line and column for malformed XML. */
export function parseJUnit(xml: string, file: string): TestSuite[] {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    throw new Error(`${file}:${valid.err.line}:${valid.err.col}: invalid XML: ${valid.err.msg}`);
  }
  let document: XmlNode;
  try {
    document = parser.parse(xml) as XmlNode;
  } catch (error) {
    throw new Error(`${file}: cannot read the XML: ${(error as Error).message}`, { cause: error });
  }
  const suites: TestSuite[] = [];
  if (isNode(document.testsuites)) {
    for (const suite of nodes(document.testsuites.testsuite)) collectSuite(suite, file, suites);
  } else if (document.testsuite !== undefined) {
    for (const suite of nodes(document.testsuite)) collectSuite(suite, file, suites);
  } else if (document.testsuites === undefined) {
    const root = Object.keys(document).find((key) => !key.startsWith('?')) ?? 'nothing';
    throw new Error(
      `${file}: not a JUnit report (root element <${root}>, expected <testsuites> or <testsuite>)`,
    );
  }
  return suites;
}

export function totals(suites: readonly TestSuite[]): Totals {
  const sum: Totals = { total: 0, passed: 0, failed: 0, skipped: 0, time: 0 };
  for (const suite of suites) {
    for (const testCase of suite.cases) {
      sum.total++;
      sum[testCase.status]++;
    }
    sum.time += suite.time;
  }
  return sum;
}

function collectSuite(node: XmlNode, file: string, into: TestSuite[]): void {
  const cases = nodes(node.testcase).map(toCase);
  const caseTime = cases.reduce((sum, testCase) => sum + testCase.time, 0);
  if (cases.length > 0 || node.testsuite === undefined) {
    into.push({
      name: text(node['@_name']) || file,
      file,
      cases,
      time: number(node['@_time']) || caseTime,
    });
  }
  for (const child of nodes(node.testsuite)) collectSuite(child, file, into);
}

function toCase(node: XmlNode): TestCase {
  const base = {
    name: text(node['@_name']) || '(unnamed)',
    classname: text(node['@_classname']),
    time: number(node['@_time']),
  };
  const problem = [...nodes(node.failure), ...nodes(node.error)][0] ?? firstRaw(node);
  if (problem !== undefined) {
    const details = text(problem['#text']);
    const message = text(problem['@_message']) || details.split('\n')[0] || text(problem['@_type']);
    return { ...base, status: 'failed', message, details };
  }
  if (node.skipped !== undefined) return { ...base, status: 'skipped' };
  return { ...base, status: 'passed' };
}

/** `<failure/>` or `<failure>text</failure>` without attributes parses to a string. */
function firstRaw(node: XmlNode): XmlNode | undefined {
  for (const key of ['failure', 'error']) {
    const value = node[key];
    if (Array.isArray(value) && value.length > 0) return { '#text': value[0] };
  }
  return undefined;
}

function nodes(value: unknown): XmlNode[] {
  const list = Array.isArray(value) ? value : value === undefined ? [] : [value];
  return list.filter(isNode);
}

function isNode(value: unknown): value is XmlNode {
  return typeof value === 'object' && value !== null;
}

function text(value: unknown): string {
  return typeof value === 'string' ? value.trim() : value === undefined ? '' : String(value);
}

function number(value: unknown): number {
  const parsed = Number.parseFloat(text(value));
  return Number.isFinite(parsed) && parsed >= 0 ? parsed : 0;
}
