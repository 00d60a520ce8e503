// End-to-end encrypted calls in the web client: two Chromium pages and
// huddle-call --e2ee in an E2EE room (tokens from /dev/token?e2ee=1 and
// `huddle-server token --e2ee`). The pages run the group and SFrame in a
// worker (huddle-e2ee as WebAssembly) and put every sender and receiver
// through encoded transforms:
//
// - all three reach the same epoch and show the same safety code;
// - the pages hear (audio energy) and see (decoded frames) each other;
//   frames that did not decrypt never reach a decoder, so energy and
//   frames mean the encryption works both ways;
// - huddle-call hears the pages and decrypts their video (keyframe sizes of
//   real VP8), and the pages get huddle-call's audio;
// - the pages' workers encrypt and decrypt hundreds of frames;
// - a browser without encoded transforms is told it cannot join, and
//   leaves.
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
  openClient,
  waitConnected,
  receivedFrom,
  e2eeToken,
  lastE2eeEpoch,
} = require('./lib');

const ROOM = 'e2ee-call';

test('Chromium pages and huddle-call hold an end-to-end encrypted call', { timeout: 180_000 }, async (t) => {
  const serverBin = requiredBinary('HUDDLE_SERVER_BIN');
  const callBin = requiredBinary('HUDDLE_CALL_BIN');
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const { server, baseUrl } = await startServer(serverBin, 'e2ee-call-server.log');
  t.after(() => stopProcess(server));
  const profiles = [];
  t.after(() => profiles.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  const clients = [];
  t.after(() => Promise.all(clients.map((c) => c.context.close().catch(() => {}))));

  const query = 'e2ee=1&camera=640x360';
  const ann = await openClient(baseUrl, ROOM, 'ann', profiles, { query });
  clients.push(ann);
  const ben = await openClient(baseUrl, ROOM, 'ben', profiles, { query });
  clients.push(ben);
  const dump = () => clients.forEach((c) => console.error(c.logs.slice(-20).join('\n')));

  // huddle-call, encrypted too, sending its test tone (no video: its
  // synthetic VP8 is not decodable).
  const token = e2eeToken(serverBin, ROOM, 'cal');
  const logFile = path.join(ARTIFACTS, 'e2ee-call-huddle-call.log');
  const log = fs.createWriteStream(logFile);
  const call = spawn(callBin, ['--url', baseUrl, '--e2ee', '--stats', '--seconds', '60'], {
    env: { ...process.env, HUDDLE_TOKEN: token, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => call.kill('SIGTERM'));
  let out = '';
  let stats = null;
  call.stdout.on('data', (c) => {
    out += c;
    log.write(c);
    for (const line of String(c).split('\n')) if (line.startsWith('stats ')) stats = JSON.parse(line.slice(6));
  });
  call.stderr.on('data', (c) => log.write(c));

  const epochOf = (c) => c.page.evaluate(() => window.huddle.state().e2ee && window.huddle.state().e2ee.epoch);
  const calEpoch = () => lastE2eeEpoch(out);
  let epochs;
  try {
    await waitFor('one epoch of three at every member', 30000, async () => {
      epochs = [await epochOf(ann), await epochOf(ben), calEpoch()];
      const [, , cal] = epochs;
      return cal && epochs.every((e) => e && e.epoch === cal.epoch) && epochs[0].members.length === 3;
    });
  } catch (e) {
    console.error(JSON.stringify(epochs), out);
    dump();
    throw e;
  }
  console.log(`epoch ${epochs[2].epoch}: safety codes ${epochs.map((e) => e.safety_code).join(' | ')}`);
  assert.equal(epochs[0].safety_code, epochs[2].safety_code);
  assert.equal(epochs[1].safety_code, epochs[2].safety_code);
  const shown = await ann.page.textContent('#e2ee');
  assert.ok(shown.includes(epochs[2].safety_code), `the page shows the code: ${shown}`);

  // Media, all of it encrypted: the pages see and hear each other.
  const annId = await ann.page.evaluate(() => window.huddle.state().me);
  const benId = await ben.page.evaluate(() => window.huddle.state().me);
  ann.id = annId;
  ben.id = benId;
  const energy = async (c, from) => {
    const s = await c.page.evaluate(() => window.huddle.inboundStats());
    const a = s.find((x) => x.kind === 'audio' && x.participantId === from);
    return a ? a.totalAudioEnergy : 0;
  };
  const calId = await waitFor('huddle-call in the room', 20000, async () => {
    const st = await ann.page.evaluate(() => window.huddle.state());
    const p = st.participants.find((x) => x.identity === 'cal');
    return p && p.id;
  });
  try {
    await waitConnected(ann);
    await waitConnected(ben);
    await waitFor('decoded video and audio energy both ways, and huddle-call heard', 45000, async () => {
      const atBen = await receivedFrom(ben, annId);
      const atAnn = await receivedFrom(ann, benId);
      const calAtAnn = await energy(ann, calId);
      const calVideo = stats && stats.videos.filter((v) => v.width > 0).length;
      return (
        atBen.frames > 20 &&
        atAnn.frames > 20 &&
        (await energy(ben, annId)) > 0 &&
        (await energy(ann, benId)) > 0 &&
        calAtAnn > 0 &&
        stats &&
        stats.audio.received > 100 &&
        calVideo === 2
      );
    });
  } catch (e) {
    console.error(JSON.stringify(stats));
    for (const c of clients) console.error(c.name, JSON.stringify(await c.page.evaluate(() => window.huddle.e2eeStats())));
    dump();
    throw e;
  }
  const annStats = await ann.page.evaluate(() => window.huddle.e2eeStats());
  const benStats = await ben.page.evaluate(() => window.huddle.e2eeStats());
  console.log(`ann's worker: ${JSON.stringify(annStats)}; ben's: ${JSON.stringify(benStats)}`);
  console.log(`huddle-call: ${JSON.stringify(stats)}`);
  for (const [name, s] of [['ann', annStats], ['ben', benStats]]) {
    assert.ok(s.encrypted > 100 && s.decrypted > 100, `${name} encrypts and decrypts`);
  }
  // A layer of the 640x360 camera: 640, 320 or 160 wide.
  for (const v of stats.videos) assert.ok([160, 320, 640].includes(v.width), `huddle-call decrypted ${v.from}'s keyframes: ${v.width}`);
});

test('a browser without encoded transforms is told it cannot join an E2EE room', { timeout: 60_000 }, async (t) => {
  const serverBin = requiredBinary('HUDDLE_SERVER_BIN');
  const { server, baseUrl } = await startServer(serverBin, 'e2ee-refused-server.log');
  t.after(() => stopProcess(server));
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  t.after(() => browser.close());
  const page = await browser.newPage();
  await page.addInitScript(() => {
    delete window.RTCRtpScriptTransform;
  });
  await page.goto(`${baseUrl}/?e2ee=1&camera=0`);
  await page.fill('#room', ROOM);
  await page.fill('#name', 'old-browser');
  await page.click('#join');
  await waitFor('the refusal to show', 15000, async () => page.isVisible('#error'));
  const error = await page.textContent('#error');
  console.log(`shown: ${error}`);
  assert.match(error, /cannot take part in end-to-end encrypted calls/);
  assert.equal(await page.evaluate(() => window.huddle.state().joined), false, 'left the room');
});
