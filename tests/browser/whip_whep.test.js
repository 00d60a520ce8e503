// Interop: aiortc (an independent WebRTC stack, PyPI) publishes a tone and a
// test picture into a huddle room through WHIP; headless Chromium plays the
// room through WHEP with the server's viewer page (crates/server/web/watch.html), trickling
// its candidates with PATCH and restarting ICE with PATCH. Both sessions end
// with DELETE.
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
const PUBLISH_SECONDS = 32;

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

    // 3. The viewer restarts ICE by PATCH (RFC 9725 §4.3.2): a new ICE
    // session on the same stream. Chromium moves to a new candidate pair
    // checked with the new credentials, and the stream goes on.
    const ice = await page.evaluate(() => window.whep.transportStats());
    const restarted = await page.evaluate(() => window.whep.restartIce());
    assert.equal(restarted, 200, 'the restart PATCH is answered 200');
    const st = await page.evaluate(() => window.whep.state());
    assert.equal(st.restarts, 1);
    assert.ok(st.etag && st.etag !== state.etag, `a new ETag: ${state.etag} -> ${st.etag}`);
    const ice2 = await waitFor('Chromium to select a pair of the new ICE session', 10_000, async () => {
      const t = await page.evaluate(() => window.whep.transportStats());
      return t.iceState === 'connected'
        && t.iceLocalUsernameFragment !== ice.iceLocalUsernameFragment
        && t.selectedCandidatePairChanges > ice.selectedCandidatePairChanges
        && t;
    });
    console.log(`ICE restart: local ufrag ${ice.iceLocalUsernameFragment} -> ${ice2.iceLocalUsernameFragment}, pair changes ${ice.selectedCandidatePairChanges} -> ${ice2.selectedCandidatePairChanges}`);
    const beforeRestart = await byKind();
    await sleep(3000);
    const afterRestart = await byKind();
    const audioAfter = afterRestart.audio.packetsReceived - beforeRestart.audio.packetsReceived;
    const framesAfter = afterRestart.video.framesDecoded - beforeRestart.video.framesDecoded;
    console.log(`after the ICE restart, 3 s: ${audioAfter} audio packets, ${framesAfter} video frames decoded`);
    assert.ok(audioAfter >= 100, `audio packets in 3 s after the restart: ${audioAfter}`);
    assert.ok(framesAfter >= 20, `video frames decoded in 3 s after the restart: ${framesAfter}`);
    assert.equal((await page.evaluate(() => window.whep.state())).connection, 'connected');
    const names = (await participants(baseUrl, admin)).map((p) => p.identity).sort();
    assert.deepEqual(names, ['aiortc-cam', 'chromium-viewer']);
    await page.screenshot({ path: path.join(ARTIFACTS, 'whep-viewer.png') });

    // 4. The viewer stops (DELETE): it leaves the room.
    const status = await page.evaluate(() => window.whep.stop());
    assert.equal(status, 200, 'DELETE of the WHEP session');
    await waitFor('the viewer to leave the room', 5000, async () =>
      (await participants(baseUrl, admin)).every((p) => p.identity !== 'chromium-viewer'));

    // 5. aiortc ends its session with DELETE when its time is up.
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

/**
 * In the page: publish the fake camera and microphone through WHIP with
 * `token`, as a WHIP client does (no trickle needed: the server is ICE lite
 * and learns the path from Chromium's checks). Resolves once the POST is
 * answered; the session is kept in `window.whip`.
 */
async function whipPublish(token) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly' });
  await pc.setLocalDescription(await pc.createOffer());
  const auth = { Authorization: `Bearer ${token}` };
  const res = await fetch('/whip', {
    method: 'POST',
    headers: { ...auth, 'Content-Type': 'application/sdp' },
    body: pc.localDescription.sdp,
  });
  const answer = await res.text();
  if (res.status !== 201) throw new Error(`WHIP POST: ${res.status} ${answer}`);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  window.whip = { pc, auth, resource: res.headers.get('Location'), etag: res.headers.get('ETag') };
  return { status: res.status, etag: window.whip.etag };
}

/** In the page: restart the WHIP session's ICE by PATCH (RFC 9725 §4.3.2). */
async function whipRestartIce() {
  const { pc, auth, resource } = window.whip;
  pc.restartIce();
  await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
  const local = pc.localDescription.sdp;
  const value = (sdp, name) => (sdp.match(new RegExp(`^a=${name}:(\\S+)`, 'm')) || [])[1];
  const res = await fetch(resource, {
    method: 'PATCH',
    headers: { ...auth, 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '*' },
    body: `a=ice-ufrag:${value(local, 'ice-ufrag')}\r\na=ice-pwd:${value(local, 'ice-pwd')}\r\n`,
  });
  const reply = await res.text();
  if (res.status !== 200) throw new Error(`WHIP restart PATCH: ${res.status} ${reply}`);
  const sdp = pc.currentRemoteDescription.sdp
    .replace(/^a=ice-ufrag:.*$/gm, `a=ice-ufrag:${value(reply, 'ice-ufrag')}`)
    .replace(/^a=ice-pwd:.*$/gm, `a=ice-pwd:${value(reply, 'ice-pwd')}`);
  await pc.setRemoteDescription({ type: 'answer', sdp });
  window.whip.etag = res.headers.get('ETag');
  return { status: res.status, etag: window.whip.etag, contentType: res.headers.get('Content-Type') };
}

/** In the page (the server's viewer page): the WHIP connection's ICE transport statistics. */
function whipTransport() {
  return window.whep.transportStats(window.whip.pc);
}

test('Chromium publishing through WHIP restarts ICE by PATCH and its viewer keeps receiving', { timeout: 120_000 }, async () => {
  const serverBin = requiredBinary('HUDDLE_SERVER_BIN');
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install chromium)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  let server;
  let context;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'huddle-chromium-whip-'));
  const logs = [];
  try {
    let baseUrl;
    ({ server, baseUrl } = await startServer(serverBin, 'huddle-server-whip-restart.log'));
    const camToken = mintToken(serverBin, ['--room', ROOM, '--identity', 'chromium-cam', '--subscribe', 'false']);
    const viewerToken = mintToken(serverBin, ['--room', ROOM, '--identity', 'chromium-viewer', '--publish', 'false']);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      ignoreDefaultArgs: ['--mute-audio'],
    });
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (m) => logs.push(`console ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`page error: ${e.message}`));
    await page.addInitScript(loopbackOnlyCandidates);
    // The server's viewer page watches the room through WHEP; the same
    // page publishes into it through WHIP.
    // (A <video> fed by a stream delays the load event until its first
    // frame, and the room has nothing to show yet.)
    await page.goto(`${baseUrl}/watch.html?room=${ROOM}&autostart=1#token=${encodeURIComponent(viewerToken)}`, {
      waitUntil: 'domcontentloaded',
    });
    const posted = await page.evaluate(whipPublish, camToken);
    assert.equal(posted.status, 201);
    await waitFor('the WHIP publisher to connect', 15_000, async () =>
      (await page.evaluate(whipTransport)).iceState === 'connected');
    await waitFor('the viewer to decode audio and video', 20_000, async () => {
      const list = await page.evaluate(() => window.whep.inboundStats());
      const s = Object.fromEntries(list.map((x) => [x.kind, x]));
      return s.audio && s.audio.packetsReceived > 0 && s.video && s.video.framesDecoded > 0;
    });
    const byKind = async () => {
      const list = await page.evaluate(() => window.whep.inboundStats());
      return Object.fromEntries(list.map((x) => [x.kind, x]));
    };

    const settled = await byKind();
    await sleep(3000);
    const steady = await byKind();
    console.log(`viewer, 3 s before the restart: ${steady.audio.packetsReceived - settled.audio.packetsReceived} audio packets, ${steady.video.framesDecoded - settled.video.framesDecoded} video frames decoded`);
    const ice = await page.evaluate(whipTransport);
    const restarted = await page.evaluate(whipRestartIce);
    assert.equal(restarted.status, 200);
    assert.equal(restarted.contentType, 'application/trickle-ice-sdpfrag');
    assert.ok(restarted.etag && restarted.etag !== posted.etag, `a new ETag: ${restarted.etag}`);
    const ice2 = await waitFor('the publisher to select a pair of the new ICE session', 10_000, async () => {
      const t = await page.evaluate(whipTransport);
      return t.iceState === 'connected'
        && t.iceLocalUsernameFragment !== ice.iceLocalUsernameFragment
        && t.selectedCandidatePairChanges > ice.selectedCandidatePairChanges
        && t;
    });
    console.log(`WHIP ICE restart: local ufrag ${ice.iceLocalUsernameFragment} -> ${ice2.iceLocalUsernameFragment}`);
    const before = await byKind();
    await sleep(3000);
    const after = await byKind();
    const audio = after.audio.packetsReceived - before.audio.packetsReceived;
    const frames = after.video.framesDecoded - before.video.framesDecoded;
    console.log(`viewer, 3 s after the publisher's ICE restart: ${audio} audio packets, ${frames} video frames decoded`);
    // Chromium keeps sending on its old path until the new one is chosen;
    // the server holds what arrives meanwhile, so the restart loses
    // nothing (a lost video packet froze the picture until a keyframe).
    const lost = after.video.packetsLost - steady.video.packetsLost;
    console.log(`video packets lost across the restart: ${lost}, keyframe requests: ${after.video.pliCount - steady.video.pliCount}`);
    assert.equal(lost, 0, 'no video packet lost across the restart');
    assert.ok(audio >= 100, `audio packets in 3 s after the restart: ${audio}`);
    assert.ok(frames >= 20, `video frames decoded in 3 s after the restart: ${frames}`);
  } catch (e) {
    if (logs.length) console.error(logs.slice(-30).join('\n'));
    throw e;
  } finally {
    if (context) await context.close().catch(() => {});
    await stopProcess(server);
    fs.rmSync(profile, { recursive: true, force: true });
  }
});
