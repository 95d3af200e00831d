/**
 * The real browser the console tests drive: Chromium from the distribution (installed by
 * `scripts/setup.sh --test`), headless, through playwright-core.
 */
import { chromium, type BrowserContext, type Page } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
/** Only a guard against hanging forever (runs build and deploy for real); nothing needs to be fast. */
const HANG_GUARD_MS = 5 * 60_000;

/** Launches Chromium on a profile in `profileDir`; its first page is the one to drive. */
export async function launchChromium(
  profileDir: string,
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  context.setDefaultTimeout(HANG_GUARD_MS);
  context.setDefaultNavigationTimeout(HANG_GUARD_MS);
  const page = context.pages()[0] ?? (await context.newPage());
  return { context, page };
}
