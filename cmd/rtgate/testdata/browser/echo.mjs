// echo.mjs drives Debian's Chromium (through playwright-core, which never
// downloads a browser) through echo.html: it opens the page, polls the page's
// RTCPeerConnection stats until the echoed video has decoded enough frames and
// echoed audio packets arrived, and prints one JSON line with the result.
//
//   node echo.mjs --url URL [--chromium PATH] [--timeout MS] [--frames N]
//
// Exit status 0 when the echo works, 1 when it does not, 2 on bad usage.
// Page console errors and page exceptions go to stderr.
import { chromium } from 'playwright-core';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    chromium: { type: 'string', default: '/usr/lib/chromium/chromium' },
    timeout: { type: 'string', default: '30000' },
    frames: { type: 'string', default: '30' },
  },
});
if (!opts.url) {
  console.error('usage: node echo.mjs --url URL [--chromium PATH] [--timeout MS] [--frames N]');
  process.exit(2);
}
const timeoutMs = Number(opts.timeout);
const minFrames = Number(opts.frames);

// Flags from shared/TESTING.md. Without --allow-loopback-in-peer-connection
// Chromium gathers no 127.0.0.1 candidate; without the background-networking
// flags it keeps trying to reach Google's hosts.
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
];

const chromiumTmpDirs = () =>
  new Set(readdirSync(tmpdir()).filter(name => name.startsWith('org.chromium.')));

const started = Date.now();
const tmpBefore = chromiumTmpDirs();
const userDataDir = mkdtempSync(join(tmpdir(), 'rtgate-e2e-chromium-'));
const result = {
  ok: false,
  framesDecoded: 0,
  videoPacketsReceived: 0,
  audioPacketsReceived: 0,
  videoWidth: 0,
  videoHeight: 0,
  videoCodec: null,
  audioCodec: null,
  elapsedMs: 0,
  step: null,
  steps: [],
  requests: [],
  pageError: null,
  error: null,
};

let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: opts.chromium,
    headless: true,
    args,
    timeout: 30000,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', msg => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      process.stderr.write(`page console.${msg.type()}: ${msg.text()}\n`);
    }
  });
  page.on('pageerror', err => {
    process.stderr.write(`page exception: ${err.message}\n`);
    result.pageError ??= err.message;
  });
  page.on('requestfailed', req => {
    process.stderr.write(`page request failed: ${req.method()} ${req.url()}: ${req.failure()?.errorText}\n`);
  });

  await page.goto(opts.url, { waitUntil: 'load', timeout: 15000 });

  const deadline = started + timeoutMs;
  for (;;) {
    const s = await page.evaluate(async () => {
      const e2e = self.e2e || {};
      const out = {
        step: e2e.step ?? null,
        steps: (e2e.steps || []).map(s => `${s.t}ms ${s.step}`),
        requests: e2e.requests || [],
        error: e2e.error ?? null,
        framesDecoded: 0,
        videoPacketsReceived: 0,
        audioPacketsReceived: 0,
        videoCodec: null,
        audioCodec: null,
      };
      const v = document.getElementById('remote-video');
      out.videoWidth = v ? v.videoWidth : 0;
      out.videoHeight = v ? v.videoHeight : 0;
      if (!self.pc) return out;
      const stats = await self.pc.getStats();
      const codecs = new Map();
      stats.forEach(r => {
        if (r.type === 'codec') codecs.set(r.id, r.mimeType);
      });
      stats.forEach(r => {
        if (r.type !== 'inbound-rtp') return;
        if (r.kind === 'video') {
          out.framesDecoded += r.framesDecoded || 0;
          out.videoPacketsReceived += r.packetsReceived || 0;
          out.videoCodec = codecs.get(r.codecId) ?? out.videoCodec;
        } else if (r.kind === 'audio') {
          out.audioPacketsReceived += r.packetsReceived || 0;
          out.audioCodec = codecs.get(r.codecId) ?? out.audioCodec;
        }
      });
      return out;
    });
    Object.assign(result, s);
    if (result.framesDecoded > minFrames && result.audioPacketsReceived > 0) {
      result.ok = true;
      break;
    }
    if (result.error) break;
    if (Date.now() > deadline) {
      result.error = `timeout after ${timeoutMs} ms at step "${result.step}": ` +
        `framesDecoded=${result.framesDecoded} (want > ${minFrames}), ` +
        `audioPacketsReceived=${result.audioPacketsReceived} (want > 0)`;
      break;
    }
    await new Promise(r => setTimeout(r, 250));
  }
} catch (err) {
  result.error = `driver: ${err && err.message ? err.message : err}`;
} finally {
  result.elapsedMs = Date.now() - started;
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
  for (const name of chromiumTmpDirs()) {
    if (!tmpBefore.has(name)) rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}

process.stdout.write(JSON.stringify(result) + '\n');
process.exit(result.ok ? 0 : 1);
