// The web client's end-to-end encryption core, huddle-e2ee as WebAssembly
// (crates/e2ee-web, built by scripts/build_e2ee_wasm.sh and served by the
// server at /e2ee/), run in headless Chromium against a real huddle-server
// in an E2EE room, beside the Rust calling crate (huddle-call --e2ee):
//
// - the page loads the module under the pages' Content-Security-Policy;
// - two members in the page (each its own WebSocket and MLS client) and
//   huddle-call form the room's group through the server, and all three
//   reach the same epoch with the same safety code (openmls compiled to
//   WebAssembly and natively agree);
// - a frame one page member encrypts, the other decrypts, naming its
//   sender; a changed one fails.
//
// The page's media through it: tests/browser/e2ee_call.test.js.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');
const {
  ARTIFACTS,
  CHROMIUM,
  CHROMIUM_ARGS,
  waitFor,
  requiredBinary,
  startServer,
  stopProcess,
  e2eeToken,
  lastE2eeEpoch,
} = require('./lib');

const ROOM = 'e2ee-wasm';

test('the WebAssembly E2EE core forms a group with the Rust calling crate in Chromium', { timeout: 120_000 }, async (t) => {
  const serverBin = requiredBinary('HUDDLE_SERVER_BIN');
  const callBin = requiredBinary('HUDDLE_CALL_BIN');
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const { server, baseUrl } = await startServer(serverBin, 'e2ee-wasm-server.log');
  t.after(() => stopProcess(server));

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`page error: ${e.message}`));
  const wasm = await fetch(`${baseUrl}/e2ee/huddle_e2ee_web_bg.wasm`);
  assert.equal(wasm.headers.get('content-type'), 'application/wasm');
  await page.goto(`${baseUrl}/`);

  // Two members in the page, each over its own WebSocket: join, publish a
  // key package, and do what the server asks.
  const tokens = { ann: e2eeToken(serverBin, ROOM, 'ann'), ben: e2eeToken(serverBin, ROOM, 'ben') };
  await page.evaluate(async (tokens) => {
    const wasm = await import('/e2ee/huddle_e2ee_web.js');
    await wasm.default();
    window.members = {};
    for (const [name, token] of Object.entries(tokens)) {
      const m = { name, client: null, epoch: null, errors: [] };
      window.members[name] = m;
      const ws = new WebSocket(`${location.origin.replace('http', 'ws')}/ws`);
      m.ws = ws;
      ws.onopen = () => ws.send(JSON.stringify({ type: 'join', token, e2ee: true }));
      ws.onmessage = (ev) => {
        const msg = JSON.parse(ev.data);
        try {
          if (msg.type === 'joined') {
            m.client = new wasm.E2eeClient(msg.participant.identity, msg.room);
            ws.send(m.client.keyPackageMessage());
            return;
          }
          if (msg.type === 'error') m.errors.push(`${msg.code}: ${msg.message}`);
          if (!m.client) return;
          const out = JSON.parse(m.client.handle(ev.data));
          for (const s of out.send) ws.send(JSON.stringify(s));
          if (out.epoch) m.epoch = out.epoch;
        } catch (e) {
          m.errors.push(String(e));
        }
      };
      // One after the other: the first creates the group.
      await new Promise((resolve) => {
        const check = () => (m.epoch ? resolve() : setTimeout(check, 20));
        check();
      });
    }
  }, tokens);

  // The Rust calling crate joins the same group.
  const log = fs.createWriteStream(path.join(ARTIFACTS, 'e2ee-wasm-huddle-call.log'));
  const call = spawn(callBin, ['--url', baseUrl, '--e2ee', '--listen-only', '--seconds', '30'], {
    env: { ...process.env, HUDDLE_TOKEN: e2eeToken(serverBin, ROOM, 'cal'), RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => call.kill('SIGTERM'));
  let calOut = '';
  call.stdout.on('data', (c) => {
    calOut += c;
    log.write(c);
  });
  call.stderr.on('data', (c) => log.write(c));

  const view = () =>
    page.evaluate(() =>
      Object.fromEntries(Object.values(window.members).map((m) => [m.name, { epoch: m.epoch, errors: m.errors }])),
    );
  const calEpoch = () => lastE2eeEpoch(calOut);
  let last;
  try {
    await waitFor('the page members and huddle-call to share an epoch of three', 20000, async () => {
      last = await view();
      const cal = calEpoch();
      return (
        cal &&
        ['ann', 'ben'].every(
          (n) => last[n].epoch && last[n].epoch.members.length === 3 && last[n].epoch.epoch === cal.epoch,
        )
      );
    });
  } catch (e) {
    console.error(JSON.stringify(last), calOut, logs.join('\n'));
    throw e;
  }
  const cal = calEpoch();
  console.log(`epoch ${cal.epoch}: ann ${last.ann.epoch.safety_code}, ben ${last.ben.epoch.safety_code}, huddle-call ${cal.safety_code}`);
  assert.equal(last.ann.epoch.safety_code, cal.safety_code);
  assert.equal(last.ben.epoch.safety_code, cal.safety_code);
  assert.deepEqual([...last.ann.epoch.members].sort(), ['ann', 'ben', 'cal']);
  assert.deepEqual(last.ann.errors.concat(last.ben.errors), []);

  // A frame from ann to ben, under the epoch's keys; a changed one fails.
  const frames = await page.evaluate(() => {
    const { ann, ben } = window.members;
    const metadata = new Uint8Array([0, 0, 3, 192]);
    const frame = new TextEncoder().encode('an Opus frame, or so');
    const sealed = ann.client.encrypt('audio', metadata, frame);
    const opened = ben.client.decrypt(metadata, sealed);
    const changed = ann.client.encrypt('audio', metadata, frame);
    changed[changed.length - 1] ^= 1;
    let refused = null;
    try {
      ben.client.decrypt(metadata, changed);
    } catch (e) {
      refused = String(e);
    }
    return {
      sealedLength: sealed.length,
      plaintext: new TextDecoder().decode(opened.plaintext),
      identity: opened.identity,
      stream: opened.stream,
      refused,
    };
  });
  console.log(`frame: ${JSON.stringify(frames)}`);
  assert.equal(frames.plaintext, 'an Opus frame, or so');
  assert.equal(frames.identity, 'ann');
  assert.equal(frames.stream, 'audio');
  assert.ok(frames.sealedLength > 20 + 16, 'header and tag added');
  assert.match(frames.refused, /authentic|tag|decrypt/i);
});
