// Interop: two headless Chromium pages (the web client of web/) and one Rust
// participant (huddle-call) in one room of a real huddle-server.
//
//   HUDDLE_SERVER_BIN=.../huddle-server HUDDLE_CALL_BIN=.../huddle-call \
//     node --test tests/browser/
//
// Chromium is Debian's (/usr/bin/chromium, or CHROMIUM_BIN), driven by
// playwright-core. A missing browser or binary fails the test; nothing skips.
// All traffic stays on 127.0.0.1; every wait is bounded; the server,
// huddle-call and the browsers are stopped at the end, also on failure.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const dgram = require('node:dgram');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const REPO = path.resolve(__dirname, '..', '..');
const ARTIFACTS = path.join(REPO, 'artifacts');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ROOM = 'interop';
/** huddle-call runs this long, then leaves and exits. */
const CALL_SECONDS = 20;

/** Flags from DESIGN.md ("Tests, in tiers", 3). */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

/**
 * Keeps the browsers' WebRTC on loopback: the machine has another interface
 * and Chromium gathers host candidates on it too. Drops every local ICE
 * candidate that is not 127.0.0.1 / ::1 before the page sees it (so it is
 * never trickled to the server). Runs in the page before app.js.
 */
function loopbackOnlyCandidates() {
  const Native = window.RTCPeerConnection;
  const isLoopback = (c) => !c || !c.candidate || c.address === '127.0.0.1' || c.address === '::1';
  window.RTCPeerConnection = class extends Native {
    set onicecandidate(handler) {
      super.onicecandidate = handler && ((e) => (isLoopback(e.candidate) ? handler(e) : undefined));
    }
    get onicecandidate() {
      return super.onicecandidate;
    }
  };
}

/** A port that was free a moment ago (TCP or UDP on 127.0.0.1). */
function freePort(kind) {
  return new Promise((resolve, reject) => {
    if (kind === 'udp') {
      const s = dgram.createSocket('udp4');
      s.once('error', reject);
      s.bind(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    } else {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    }
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Like sleep, for deadlines raced against other promises: its timer does
 *  not keep the process alive once everything else is done. */
const deadline = (ms, value) => new Promise((r) => setTimeout(r, ms, value).unref());

/** Poll `probe` until it returns a truthy value; fail after `ms` with `what`. */
async function waitFor(what, ms, probe, everyMs = 250) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    }
    await sleep(everyMs);
  }
}

/** A binary named by an environment variable; fails loudly without it. */
function requiredBinary(envVar) {
  const bin = process.env[envVar];
  assert.ok(bin, `${envVar} is not set (path of the binary to test; .ci/run sets it)`);
  assert.ok(fs.existsSync(bin), `${envVar}=${bin} does not exist: build it with cargo build --workspace`);
  return bin;
}

/** Start a process, its output to `logFile`; `exited` resolves with its code. */
function startProcess(bin, args, logFile, env = {}) {
  const log = fs.openSync(logFile, 'w');
  const child = spawn(bin, args, {
    stdio: ['ignore', log, log],
    env: { ...process.env, ...env },
  });
  fs.closeSync(log);
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  return child;
}

/** SIGTERM, then SIGKILL if it is still there after `graceMs`. */
async function stopProcess(child, graceMs = 5000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const done = await Promise.race([child.exited.then(() => true), deadline(graceMs, false)]);
  if (!done) {
    child.kill('SIGKILL');
    await child.exited;
  }
}

/** Samples of a 16-bit PCM WAV, tolerant of a header never finalized. */
function readWavSamples(file) {
  const buf = fs.readFileSync(file);
  assert.ok(buf.length >= 44 && buf.toString('ascii', 0, 4) === 'RIFF', `${file} is not a WAV file`);
  let offset = 12;
  while (offset + 8 <= buf.length) {
    const id = buf.toString('ascii', offset, offset + 4);
    const size = buf.readUInt32LE(offset + 4);
    if (id === 'data') {
      const start = offset + 8;
      // A writer killed before finalizing leaves size 0: take the rest.
      const end = size === 0 || start + size > buf.length ? buf.length : start + size;
      const samples = new Int16Array((end - start) >> 1);
      for (let i = 0; i < samples.length; i++) samples[i] = buf.readInt16LE(start + 2 * i);
      return samples;
    }
    offset += 8 + size + (size & 1);
  }
  throw new Error(`${file} has no data chunk`);
}

function rms(samples) {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return samples.length ? Math.sqrt(sum / samples.length) : 0;
}

/** Open the web client in a fresh Chromium and join through its form. */
async function openClient(baseUrl, name, profiles) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `huddle-chromium-${name}-`));
  profiles.push(dir);
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    // Playwright mutes audio by default; inbound audio must be played.
    ignoreDefaultArgs: ['--mute-audio'],
    viewport: { width: 1280, height: 800 },
  });
  const page = context.pages()[0] || (await context.newPage());
  const logs = [];
  page.on('console', (m) => logs.push(`[${name}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[${name}] page error: ${e.message}`));
  await page.addInitScript(loopbackOnlyCandidates);
  // aec=0: no echo cancellation, gain control or noise suppression.
  await page.goto(`${baseUrl}/?aec=0`);
  await page.fill('#room', ROOM);
  await page.fill('#name', name);
  await page.click('#join');
  await waitFor(`${name} to join`, 15000, () => page.evaluate(() => window.huddle.state().joined));
  return { name, context, page, logs };
}

/** inbound-rtp of a page's subscriber connection, by room track id. */
async function inbound(client) {
  const list = await client.page.evaluate(() => window.huddle.inboundStats());
  return new Map(list.filter((s) => s.trackId).map((s) => [s.trackId, s]));
}

test('two Chromium pages and huddle-call in one room', { timeout: 180_000 }, async (t) => {
  const serverBin = requiredBinary('HUDDLE_SERVER_BIN');
  const callBin = requiredBinary('HUDDLE_CALL_BIN');
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install chromium)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  const httpPort = await freePort('tcp');
  const mediaPort = await freePort('udp');
  const baseUrl = `http://127.0.0.1:${httpPort}`;
  const profiles = [];
  const clients = [];
  let server;
  let call;
  const wav = path.join(ARTIFACTS, 'huddle-call-received.wav');
  fs.rmSync(wav, { force: true });

  try {
    server = startProcess(
      serverBin,
      ['serve', '--dev', '--http', `127.0.0.1:${httpPort}`, '--media-udp', `127.0.0.1:${mediaPort}`],
      path.join(ARTIFACTS, 'huddle-server.log'),
      // The secret through the environment, as operators are told to.
      { HUDDLE_SECRET: 'browser-interop-secret', RUST_LOG: process.env.RUST_LOG || 'info' },
    );
    await waitFor('the server to answer /healthz', 15000, async () => {
      if (server.exitCode !== null) throw new Error(`huddle-server exited (${server.exitCode}): see artifacts/huddle-server.log`);
      return fetch(`${baseUrl}/healthz`).then((r) => r.ok, () => false);
    });

    // 1. Both browsers join through the page's form.
    const t0 = Date.now();
    clients.push(await openClient(baseUrl, 'alice', profiles));
    clients.push(await openClient(baseUrl, 'bob', profiles));
    const [alice, bob] = clients;

    // 2. The Rust participant, with a token from the development endpoint.
    const res = await fetch(`${baseUrl}/dev/token?room=${ROOM}&identity=rusty`);
    assert.equal(res.status, 200, 'GET /dev/token');
    const { token } = await res.json();
    call = startProcess(
      callBin,
      ['--url', `ws://127.0.0.1:${httpPort}/ws`, '--token', token, '--seconds', String(CALL_SECONDS), '--record', wav],
      path.join(ARTIFACTS, 'huddle-call.log'),
    );

    // Both peer connections of each page connect (ICE + DTLS with the SFU).
    for (const c of clients) {
      let last;
      await waitFor(`${c.name}'s publisher and subscriber connections to connect`, 15000, async () => {
        const st = await c.page.evaluate(() => window.huddle.state());
        if (!st.joined) throw new Error(`${c.name} was disconnected (last seen: ${JSON.stringify(last)}); see the page log above and artifacts/huddle-server.log`);
        last = { publisher: st.publisher, subscriber: st.subscriber };
        return st.publisher === 'connected' && st.subscriber === 'connected';
      }).catch((e) => {
        throw new Error(`${e.message}: ${JSON.stringify(last)}`);
      });
    }

    // 3. Each browser receives three remote tracks: the other browser's
    //    audio and video, and huddle-call's audio.
    const ids = {};
    for (const c of clients) ids[c.name] = await c.page.evaluate(() => window.huddle.state().me);
    for (const c of clients) {
      const other = c === alice ? bob : alice;
      await waitFor(`${c.name} to receive 2 audio + 1 video tracks`, 30000, async () => {
        const stats = [...(await inbound(c)).values()];
        const audio = stats.filter((s) => s.kind === 'audio' && s.packetsReceived > 0);
        const video = stats.filter((s) => s.kind === 'video' && s.framesDecoded > 0);
        return audio.length >= 2 && video.some((s) => s.participantId === ids[other.name]);
      });
    }
    t.diagnostic(`all media flowing ${Date.now() - t0} ms after the first page opened`);

    // 4. Media keeps flowing: two samples 3 s apart.
    const first = await Promise.all(clients.map(inbound));
    await sleep(3000);
    const second = await Promise.all(clients.map(inbound));
    clients.forEach((c, i) => {
      const audio = [...second[i].values()].filter((s) => s.kind === 'audio');
      assert.equal(audio.length, 2, `${c.name} receives 2 audio tracks: ${JSON.stringify(audio)}`);
      for (const now of second[i].values()) {
        const before = first[i].get(now.trackId);
        assert.ok(before, `${c.name}: track ${now.trackId} was there in the first sample`);
        const what = `${c.name} <- ${now.participantId} ${now.kind} ${now.trackId}`;
        if (now.kind === 'audio') {
          assert.ok(now.packetsReceived > before.packetsReceived, `${what}: packetsReceived grows (${before.packetsReceived} -> ${now.packetsReceived})`);
          assert.ok(now.totalAudioEnergy > before.totalAudioEnergy, `${what}: totalAudioEnergy grows (${before.totalAudioEnergy} -> ${now.totalAudioEnergy})`);
        } else {
          assert.ok(now.framesDecoded > before.framesDecoded, `${what}: framesDecoded grows (${before.framesDecoded} -> ${now.framesDecoded})`);
        }
        t.diagnostic(`${what} ${now.codec}: packets ${now.packetsReceived}, energy ${now.totalAudioEnergy.toFixed(3)}, frames ${now.framesDecoded} (${now.frameWidth}px)`);
      }
    });

    // 5. The web client in the call.
    await alice.page.screenshot({ path: path.join(ARTIFACTS, 'web-client.png') });

    // 6. alice mutes her microphone through the page: bob is told
    //    (mute_changed for the server's id of alice's audio track).
    const aliceAudioMuted = (c) =>
      c.page.evaluate((aliceId) => {
        const p = window.huddle.state().participants.find((x) => x.id === aliceId);
        const audio = p && p.tracks.find((t) => t.kind === 'audio');
        return audio ? audio.muted : null;
      }, ids.alice);
    await alice.page.click('#mute-audio');
    await waitFor('bob to see alice muted', 5000, async () => (await aliceAudioMuted(bob)) === true);
    assert.equal(await alice.page.getAttribute('#mute-audio', 'aria-pressed'), 'true');
    await alice.page.click('#mute-audio');
    await waitFor('bob to see alice unmuted', 5000, async () => (await aliceAudioMuted(bob)) === false);

    // 7. bob leaves through the page; alice sees him go.
    await bob.page.click('#leave');
    const leftAt = Date.now();
    await waitFor('alice to see bob leave', 10000, () =>
      alice.page.evaluate(
        (bobId) =>
          !window.huddle.state().participants.some((p) => p.id === bobId) &&
          !document.querySelector(`.tile[data-participant-id="${bobId}"]`),
        ids.bob,
      ),
    );
    t.diagnostic(`alice saw bob leave after ${Date.now() - leftAt} ms`);
    assert.equal(await bob.page.isVisible('#join-form'), true, 'bob is back at the join form');

    // 8. huddle-call recorded a browser's (beeping fake microphone) audio.
    const code = await Promise.race([call.exited, deadline((CALL_SECONDS + 15) * 1000, 'timeout')]);
    assert.equal(code, 0, `huddle-call exits 0 (see artifacts/huddle-call.log)`);
    const samples = readWavSamples(wav);
    const level = rms(samples);
    t.diagnostic(`huddle-call recorded ${(samples.length / 48000).toFixed(1)} s, RMS ${level.toFixed(0)}`);
    assert.ok(samples.length > 48000, `huddle-call recorded more than 1 s (${samples.length} samples)`);
    assert.ok(level > 100, `huddle-call's recording is not silent (RMS ${level.toFixed(1)})`);
  } catch (e) {
    for (const c of clients) {
      const tail = c.logs.slice(-30).join('\n');
      if (tail) console.error(tail);
    }
    throw e;
  } finally {
    await Promise.all(clients.map((c) => c.context.close().catch(() => {})));
    await stopProcess(call);
    await stopProcess(server);
    for (const dir of profiles) fs.rmSync(dir, { recursive: true, force: true });
  }
});
