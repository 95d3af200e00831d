import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { parseJUnit, totals } from './junit.js';
import { stepFixture, type StepFixture } from './step-fixture.js';
import { testReportStep } from './test-report.js';

const fixtures: StepFixture[] = [];
afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.cleanup();
});

// Shaped like Maven surefire: a lone <testsuite>, a failure with a message and a trace.
const surefire = `<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="com.acme.CartTest" tests="3" failures="1" errors="0" skipped="1" time="0.42">
  <properties><property name="java.version" value="21"/></properties>
  <testcase name="addsItem" classname="com.acme.CartTest" time="0.1"/>
  <testcase name="appliesDiscount" classname="com.acme.CartTest" time="0.3">
    <failure message="expected: &lt;90&gt; but was: &lt;100&gt;" type="org.opentest4j.AssertionFailedError">org.opentest4j.AssertionFailedError: expected: &lt;90&gt; but was: &lt;100&gt;
	at com.acme.CartTest.appliesDiscount(CartTest.java:42)</failure>
  </testcase>
  <testcase name="checkout" classname="com.acme.CartTest" time="0.02"><skipped/></testcase>
</testsuite>`;

// Shaped like jest-junit: <testsuites> around suites; an error with text only; a pipe in a name.
const jest = `<testsuites name="jest tests" tests="3" failures="0" errors="1" time="1.5">
  <testsuite name="api | orders" tests="2" time="1.2">
    <testcase classname="orders" name="lists orders" time="0.7"/>
    <testcase classname="orders" name="creates an order" time="0.5"><error>TypeError: undefined is not a function
    at create (orders.js:10:5)</error></testcase>
  </testsuite>
  <testsuite name="empty" tests="0" time="0"/>
  <testsuite name="outer"><testsuite name="inner"><testcase name="nested" time="0.3"/></testsuite></testsuite>
</testsuites>`;

async function reportJob(files: Record<string, string>): Promise<StepFixture> {
  const fixture = await stepFixture();
  fixtures.push(fixture);
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(fixture.context.workspace, name);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content);
  }
  return fixture;
}

const report = (fixture: StepFixture, raw: Record<string, string>) =>
  testReportStep.run(fixture.context, testReportStep.inputs.parse(raw));

describe('JUnit parsing', () => {
  test('suites, cases and their outcome, counted from the cases', () => {
    const suites = [
      ...parseJUnit(surefire, 'target/surefire.xml'),
      ...parseJUnit(jest, 'junit.xml'),
    ];
    assert.deepEqual(
      suites.map((suite) => [suite.name, suite.cases.length]),
      [
        ['com.acme.CartTest', 3],
        ['api | orders', 2],
        ['empty', 0],
        ['inner', 1],
      ],
    );
    assert.deepEqual(totals(suites), {
      total: 6,
      passed: 3,
      failed: 2,
      skipped: 1,
      time: 0.42 + 1.2 + 0 + 0.3,
    });
    const failure = suites[0]!.cases[1]!;
    assert.equal(failure.status, 'failed');
    assert.equal(failure.message, 'expected: <90> but was: <100>');
    assert.match(failure.details ?? '', /CartTest\.java:42/);
    const error = suites[1]!.cases[1]!;
    assert.equal(error.message, 'TypeError: undefined is not a function');
  });

  test('malformed XML names the file, line and column; other XML is not a report', () => {
    assert.throws(
      () => parseJUnit('<testsuite>\n  <testcase name="a">\n</testsuite>', 'reports/bad.xml'),
      /^Error: reports\/bad\.xml:3:\d+: invalid XML: /,
    );
    assert.throws(
      () => parseJUnit('<project><name>x</name></project>', 'pom.xml'),
      /pom\.xml: not a JUnit report \(root element <project>/,
    );
  });
});

describe('valve/test-report', () => {
  test('a summary with totals, a row per suite and the failed cases; the step fails', async () => {
    const fixture = await reportJob({
      'target/surefire-reports/TEST-CartTest.xml': surefire,
      'web/junit.xml': jest,
    });
    await assert.rejects(
      report(fixture, { path: 'target/surefire-reports/*.xml\n**/junit.xml' }),
      /2 of 6 tests failed, first com\.acme\.CartTest › appliesDiscount: expected: <90> but was: <100>/,
    );
    assert.equal(fixture.summaries.length, 1);
    const summary = fixture.summaries[0]!;
    assert.match(summary, /^### Test results: failed\n/);
    assert.match(summary, /\*\*6\*\* tests: \*\*3\*\* passed, \*\*2\*\* failed, \*\*1\*\* skipped/);
    assert.match(
      summary,
      /\| com\.acme\.CartTest \| target\/surefire-reports\/TEST-CartTest\.xml \| 3 \| 1 \| 1 \| 1 \| 0\.42 s \|/,
    );
    // A pipe in a suite name does not break the table.
    assert.match(summary, /\| api \\\| orders \| web\/junit\.xml \| 2 \| 1 \| 1 \| 0 \|/);
    assert.match(
      summary,
      /- \*\*com\.acme\.CartTest › appliesDiscount\*\* \(com\.acme\.CartTest\): expected: &lt;90&gt; but was: &lt;100&gt;/,
    );
    // The error's text (a stack trace) follows in a code block.
    assert.match(
      summary,
      / {2}```\n {2}TypeError: undefined is not a function\n {6}at create \(orders\.js:10:5\)\n {2}```/,
    );
  });

  test('fail-on-failure false: outputs the counts and succeeds', async () => {
    const fixture = await reportJob({ 'junit.xml': jest });
    assert.deepEqual(await report(fixture, { path: 'junit.xml', 'fail-on-failure': 'false' }), {
      total: '3',
      passed: '2',
      failed: '1',
      skipped: '0',
    });
    assert.match(fixture.summaries[0]!, /#### Failed tests/);
  });

  test('all passing: a passed summary and no failed section; custom title', async () => {
    const fixture = await reportJob({
      'out/a.xml': '<testsuite name="a"><testcase name="ok" time="1.5"/></testsuite>',
    });
    const outputs = await report(fixture, { path: 'out', title: 'Unit tests' });
    assert.equal(outputs.passed, '1');
    assert.match(fixture.summaries[0]!, /^### Unit tests: passed/);
    assert.doesNotMatch(fixture.summaries[0]!, /Failed tests/);
  });

  test('a bad file fails the step naming it; no files is an error unless told otherwise', async () => {
    const fixture = await reportJob({ 'reports/broken.xml': '<testsuite><testcase></testsuite>' });
    await assert.rejects(report(fixture, { path: 'reports/*.xml' }), /reports\/broken\.xml:1:\d+/);
    await assert.rejects(
      report(fixture, { path: 'none/*.xml' }),
      /no test report matches none\/\*\.xml/,
    );
    assert.deepEqual(await report(fixture, { path: 'none', 'if-no-files-found': 'ignore' }), {
      total: '0',
      passed: '0',
      failed: '0',
      skipped: '0',
    });
  });
});
