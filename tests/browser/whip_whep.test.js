// Interop: aiortc (an independent WebRTC stack, PyPI) publishes a tone and a
// test picture into a huddle room through WHIP; headless Chromium plays the
// room through WHEP with the server's viewer page (crates/server/web/watch.html), trickling
// its candidates with PATCH. Both sessions end with DELETE.
//
//   HUDDLE_SERVER_BIN=.../huddle-server HUDDLE_PYTHON=.../python3 \
//     node --test tests/browser/whip_whep.test.js
//
// HUDDLE_PYTHON is a Python with aiortc installed (.ci/run makes one); a
// missing aiortc, browser or binary fails the test. Traffic stays on
// 127.0.0.1; every wait is bounded; everything started is stopped.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');
const {
  ARTIFACTS,
  CHROMIUM,
  CHROMIUM_ARGS,
  loopbackOnlyCandidates,
  sleep,
  waitFor,
  requiredBinary,
  startProcess,
  stopProcess,
  startServer,
} = require('./lib');

const ROOM = 'whip-whep';
const SECRET = 'browser-interop-secret-padded-to-32-bytes'; // what startServer gives the server
/** aiortc publishes this long, then DELETEs its session. */
const PUBLISH_SECONDS = 25;

/** A token from `huddle-server token` (the operator's way). */
function mintToken(serverBin, args) {
  return execFileSync(serverBin, ['token', ...args], {
    env: { ...process.env, HUDDLE_SECRET: SECRET },
    encoding: 'utf8',
  }).trim();
}

async function participants(baseUrl, admin) {
  const res = await fetch(`${baseUrl}/api/rooms/${ROOM}/participants`, {
    headers: { Authorization: `Bearer ${admin}` },
  });
  if (res.status === 404) return [];
  assert.equal(res.status, 200, 'GET participants');
  return res.json();
}

test('aiortc publishes through WHIP, Chromium plays it through WHEP', { timeout: 150_000 }, async () => {
  const serverBin = requiredBinary('HUDDLE_SERVER_BIN');
  const python = process.env.HUDDLE_PYTHON || 'python3';
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install chromium)`);
  try {
    execFileSync(python, ['-c', 'import aiortc'], { stdio: 'pipe' });
  } catch (e) {
    assert.fail(`${python} cannot import aiortc (pip install -r tests/browser/requirements.txt): ${e.stderr}`);
  }
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  let server;
  let publisher;
  let context;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'huddle-chromium-whep-'));
  const logs = [];
  try {
    let baseUrl;
    ({ server, baseUrl } = await startServer(serverBin, 'huddle-server-whip.log'));
    const camToken = mintToken(serverBin, ['--room', ROOM, '--identity', 'aiortc-cam', '--subscribe', 'false']);
    const viewerToken = mintToken(serverBin, ['--room', ROOM, '--identity', 'chromium-viewer', '--publish', 'false']);
    const admin = mintToken(serverBin, ['--identity', 'ops', '--admin']);

    // 1. aiortc publishes through WHIP.
    const pubLog = path.join(ARTIFACTS, 'aiortc-whip.log');
    publisher = startProcess(
      python,
      [path.join(__dirname, 'aiortc_whip.py'), '--endpoint', `${baseUrl}/whip`, '--token', camToken,
        '--seconds', String(PUBLISH_SECONDS)],
      pubLog,
    );
    // startProcess sends output to the log; read the events from it.
    const pubEvents = () =>
      fs.readFileSync(pubLog, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const connected = await waitFor('aiortc to connect through WHIP', 25_000, () => {
      if (publisher.exitCode !== null) throw new Error(`aiortc exited (${publisher.exitCode}): see artifacts/aiortc-whip.log`);
      return pubEvents().find((e) => e.event === 'connected');
    });
    // The resource is an unguessable id of its own, not the participant id
    // the room sees (which would let anyone who sees the room address it).
    assert.match(connected.location, /^\/whip\/[A-Za-z0-9]{24}$/);
    const list = await participants(baseUrl, admin);
    assert.deepEqual(list.map((p) => p.identity), ['aiortc-cam'], 'the WHIP publisher is in the room');
    assert.ok(!connected.location.includes(list[0].id), 'the resource is not named by the participant id');

    // 2. Chromium watches through WHEP.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      ignoreDefaultArgs: ['--mute-audio'],
      viewport: { width: 1024, height: 800 },
    });
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (m) => logs.push(`console ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`page error: ${e.message}`));
    await page.addInitScript(loopbackOnlyCandidates);
    // The token in the fragment, which never reaches the server.
    await page.goto(`${baseUrl}/watch.html?room=${ROOM}&autostart=1#token=${encodeURIComponent(viewerToken)}`);
    await waitFor('the WHEP viewer to connect', 20_000, async () => {
      const st = await page.evaluate(() => window.whep.state());
      return st.connection === 'connected';
    });
    const shown = await page.evaluate(() => location.href);
    assert.ok(!shown.includes('token'), `the token is scrubbed from the address bar: ${shown}`);
    assert.ok(shown.includes('room='), `other parameters stay: ${shown}`);
    const byKind = async () => {
      const list = await page.evaluate(() => window.whep.inboundStats());
      return Object.fromEntries(list.map((s) => [s.kind, s]));
    };
    await waitFor('audio and decoded video to arrive', 20_000, async () => {
      const s = await byKind();
      return s.audio && s.audio.packetsReceived > 0 && s.video && s.video.framesDecoded > 0;
    });
    const before = await byKind();
    await sleep(3000);
    const after = await byKind();
    const audioPackets = after.audio.packetsReceived - before.audio.packetsReceived;
    const frames = after.video.framesDecoded - before.video.framesDecoded;
    console.log(`WHEP viewer, 3 s: ${audioPackets} audio packets, energy +${(after.audio.totalAudioEnergy - before.audio.totalAudioEnergy).toFixed(3)}, ${frames} video frames decoded`);
    // 50 packets/s of Opus and 15 fps are sent; allow for scheduling.
    assert.ok(audioPackets >= 100, `audio packets in 3 s: ${audioPackets}`);
    assert.ok(after.audio.totalAudioEnergy > before.audio.totalAudioEnergy, 'the tone has energy');
    assert.ok(frames >= 20, `video frames decoded in 3 s: ${frames}`);
    const state = await page.evaluate(() => window.whep.state());
    assert.ok(state.patches.length > 0, 'the viewer trickled candidates');
    assert.ok(state.patches.every((s) => s === 204), `PATCH answers: ${state.patches}`);
    const names = (await participants(baseUrl, admin)).map((p) => p.identity).sort();
    assert.deepEqual(names, ['aiortc-cam', 'chromium-viewer']);
    await page.screenshot({ path: path.join(ARTIFACTS, 'whep-viewer.png') });

    // 3. The viewer stops (DELETE): it leaves the room.
    const status = await page.evaluate(() => window.whep.stop());
    assert.equal(status, 200, 'DELETE of the WHEP session');
    await waitFor('the viewer to leave the room', 5000, async () =>
      (await participants(baseUrl, admin)).every((p) => p.identity !== 'chromium-viewer'));

    // 4. aiortc ends its session with DELETE when its time is up.
    const code = await Promise.race([publisher.exited, sleep(PUBLISH_SECONDS * 1000 + 15_000).then(() => 'timeout')]);
    assert.equal(code, 0, `aiortc exit: ${code}; see artifacts/aiortc-whip.log`);
    const deleted = pubEvents().find((e) => e.event === 'deleted');
    assert.equal(deleted && deleted.status, 200, 'DELETE of the WHIP session');
    const stats = pubEvents().find((e) => e.event === 'stats');
    console.log(`aiortc sent: ${JSON.stringify(stats && stats.packets_sent)}`);
    assert.deepEqual(await participants(baseUrl, admin), [], 'the room is empty');
  } catch (e) {
    if (logs.length) console.error(logs.slice(-30).join('\n'));
    throw e;
  } finally {
    if (context) await context.close().catch(() => {});
    await stopProcess(publisher);
    await stopProcess(server);
    fs.rmSync(profile, { recursive: true, force: true });
  }
});
