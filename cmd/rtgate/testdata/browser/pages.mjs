// pages.mjs drives Debian's Chromium (through playwright-core, which never
// downloads a browser) for the WHIP/WHEP end-to-end tests
// (cmd/rtgate/e2e_whip_test.go): one browser, several named pages, steered
// by the Go test with one JSON command per line on stdin; it answers each
// with one JSON line on stdout:
//
//   {"id":1,"op":"open","page":"pub","url":"http://..."}   -> {"id":1,"ok":true}
//   {"id":2,"op":"eval","page":"pub","expr":"rtgate.state"} -> {"id":2,"ok":true,"value":"live"}
//   {"id":3,"op":"goto","page":"pub","url":"about:blank"}  (opens the page if need be)
//   {"id":4,"op":"screenshot","page":"pub","path":"/tmp/x.png"}
//   {"id":5,"op":"close","page":"pub"}  (leaves the page first: pagehide runs)
//   {"id":6,"op":"quit"}
//
// A failed command answers {"id":N,"ok":false,"error":"..."}. eval awaits
// a promise the expression returns.
//
// Every HTTP response any page receives is appended to --responses as one
// JSON line {method, url, status, headers, body} (body as latin1 text, so
// bytes survive), for the test to search: no response may carry the app
// secret. Page console errors and exceptions go to stderr.
//
//   node pages.mjs --responses FILE [--chromium PATH] [--dir DIR]
import { chromium } from 'playwright-core';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    chromium: { type: 'string', default: '/usr/lib/chromium/chromium' },
    responses: { type: 'string' },
    dir: { type: 'string' }, // where Chromium's profile and temporary files go
  },
});
if (!opts.responses) {
  console.error('usage: node pages.mjs --responses FILE [--chromium PATH] [--dir DIR]');
  process.exit(2);
}
writeFileSync(opts.responses, '');

// Flags from shared/TESTING.md, as echo.mjs. The fake device gives every
// page the same synthetic camera (a moving pattern) and microphone (beeps).
const args = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
  // Several pages play at once; none may be throttled as a background tab.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

// Everything Chromium writes goes under one directory of ours: its profile,
// and its temporary files (the /tmp/org.chromium.* directories) through
// TMPDIR, so that cleaning up never touches another Chromium's files.
const ownDir = mkdtempSync(join(opts.dir || tmpdir(), 'rtgate-e2e-chromium-'));
const userDataDir = join(ownDir, 'profile');
const chromiumTmp = join(ownDir, 'tmp');
mkdirSync(chromiumTmp);

function cleanup() {
  rmSync(ownDir, { recursive: true, force: true });
}

const pending = new Set(); // response records being read
function record(resp) {
  const p = (async () => {
    const req = resp.request();
    const rec = { method: req.method(), url: resp.url(), status: resp.status(), headers: {}, body: '' };
    try {
      rec.headers = await resp.allHeaders();
    } catch (err) {
      rec.headersError = String(err.message || err);
      rec.headers = resp.headers();
    }
    try {
      rec.body = (await resp.body()).toString('latin1');
    } catch (err) {
      // Redirects, and responses of a page that is gone, have no body.
      rec.bodyError = String(err.message || err).split('\n')[0];
    }
    appendFileSync(opts.responses, JSON.stringify(rec) + '\n');
  })();
  pending.add(p);
  p.finally(() => pending.delete(p));
}

const pages = new Map();
let context;

function page(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page "${name}"`);
  return p;
}

async function newPage(name) {
  const p = await context.newPage();
  pages.set(name, p);
  p.on('console', msg => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      process.stderr.write(`[${name}] console.${msg.type()}: ${msg.text()}\n`);
    }
  });
  p.on('pageerror', err => process.stderr.write(`[${name}] exception: ${err.message}\n`));
  p.on('requestfailed', req =>
    process.stderr.write(`[${name}] request failed: ${req.method()} ${req.url()}: ${req.failure()?.errorText}\n`));
  return p;
}

async function run(cmd) {
  switch (cmd.op) {
    case 'open':
      if (pages.has(cmd.page)) throw new Error(`page "${cmd.page}" is open`);
      await (await newPage(cmd.page)).goto(cmd.url, { waitUntil: 'load', timeout: 15000 });
      return null;
    case 'goto':
      // Leaving the current document runs its pagehide handler.
      await (pages.get(cmd.page) ?? (await newPage(cmd.page))).goto(cmd.url, { waitUntil: 'load', timeout: 15000 });
      return null;
    case 'eval':
      return await page(cmd.page).evaluate(cmd.expr);
    case 'screenshot': {
      const p = page(cmd.page);
      if (cmd.selector) await p.locator(cmd.selector).screenshot({ path: cmd.path, timeout: 10000 });
      else await p.screenshot({ path: cmd.path, fullPage: true, timeout: 10000 });
      return null;
    }
    case 'close': {
      const p = page(cmd.page);
      pages.delete(cmd.page);
      // Leave the page first, as a person closing a tab or following a link
      // does: its pagehide handler runs and DELETEs its resource (a keepalive
      // fetch). page.close() alone does not reliably run pagehide.
      await p.goto('about:blank', { timeout: 15000 }).catch(() => {});
      await p.close();
      return null;
    }
    default:
      throw new Error(`unknown op "${cmd.op}"`);
  }
}

let exitCode = 0;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: opts.chromium,
    headless: true,
    args,
    env: { ...process.env, TMPDIR: chromiumTmp },
    viewport: { width: 1000, height: 740 },
    timeout: 30000,
  });
  context.on('response', record);
  for (const p of context.pages()) await p.close();
  process.stdout.write(JSON.stringify({ id: 0, ok: true, value: 'ready' }) + '\n');

  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (err) {
      process.stdout.write(JSON.stringify({ id: -1, ok: false, error: `bad command: ${err.message}` }) + '\n');
      continue;
    }
    if (cmd.op === 'quit') {
      await Promise.allSettled([...pending]);
      process.stdout.write(JSON.stringify({ id: cmd.id, ok: true }) + '\n');
      break;
    }
    try {
      const value = await run(cmd);
      process.stdout.write(JSON.stringify({ id: cmd.id, ok: true, value: value ?? null }) + '\n');
    } catch (err) {
      process.stdout.write(JSON.stringify({ id: cmd.id, ok: false, error: String(err && err.message ? err.message : err) }) + '\n');
    }
  }
} catch (err) {
  process.stderr.write(`driver: ${err && err.stack ? err.stack : err}\n`);
  process.stdout.write(JSON.stringify({ id: -1, ok: false, error: `driver: ${err && err.message ? err.message : err}` }) + '\n');
  exitCode = 1;
} finally {
  await Promise.allSettled([...pending]);
  if (context) await context.close().catch(() => {});
  cleanup();
}
process.exit(exitCode);
