// Helpers shared by the browser interop tests (*.test.js in this directory):
// starting and stopping huddle-server, huddle-call and headless Chromium,
// bounded waits, and 16-bit PCM WAV files. Not a test file itself.
'use strict';

const assert = require('node:assert/strict');
const { execFile, execFileSync, spawn } = require('node:child_process');
const dgram = require('node:dgram');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const REPO = path.resolve(__dirname, '..', '..');
const ARTIFACTS = path.join(REPO, 'artifacts');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

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
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > end) {
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

/**
 * `huddle-server serve --dev` on free 127.0.0.1 ports, its output to
 * artifacts/`logName`; resolves once /healthz answers. Options: `mediaPort`
 * (UDP, default a free one), `httpPort` (TCP, default a free one: give the
 * old one to restart a server where its clients look for it) and `env`
 * (more environment for the server, e.g. HUDDLE_MEDIA_PUBLIC). Returns
 * { server, httpPort, baseUrl }; stop it with stopProcess(server).
 */
async function startServer(serverBin, logName = 'huddle-server.log', { mediaPort = null, httpPort: port = null, env = {} } = {}) {
  // Ports this picks were free when probed, but the server opens the media
  // port of every worker (the next ones up) over UDP and TCP, and any of
  // them may be taken by then: with media ports of its own choosing it
  // tries again with others, up to three times (an HTTP port given, as a
  // server restarted where it was, stays).
  const mayRetry = mediaPort === null;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startServerOnce(serverBin, logName, { mediaPort, httpPort: port, env });
    } catch (e) {
      if (!mayRetry || attempt === 3 || !/exited/.test(e.message)) throw e;
      const log = fs.readFileSync(path.join(ARTIFACTS, logName), 'utf8');
      if (!/cannot open the media sockets|cannot listen on tcp/.test(log)) throw e;
      console.log(`huddle-server found a port taken (attempt ${attempt}); trying other ports`);
    }
  }
}

async function startServerOnce(serverBin, logName, { mediaPort, httpPort: port, env }) {
  const httpPort = port ?? (await freePort('tcp'));
  const udpPort = mediaPort ?? (await freePort('udp'));
  const baseUrl = `http://127.0.0.1:${httpPort}`;
  const server = startProcess(
    serverBin,
    ['serve', '--dev', '--http', `127.0.0.1:${httpPort}`, '--media-udp', `127.0.0.1:${udpPort}`],
    path.join(ARTIFACTS, logName),
    // The secret through the environment, as operators are told to.
    { HUDDLE_SECRET: SERVER_SECRET, RUST_LOG: process.env.RUST_LOG || 'info,huddle_sfu::egress=debug', ...env },
  );
  try {
    await waitFor('the server to answer /healthz', 15000, async () => {
      if (server.exitCode !== null) throw new Error(`huddle-server exited (${server.exitCode}): see artifacts/${logName}`);
      return fetch(`${baseUrl}/healthz`).then((r) => r.ok, () => false);
    });
  } catch (e) {
    await stopProcess(server);
    throw e;
  }
  return { server, httpPort, baseUrl };
}

/** The secret `startServer` gives the server. */
const SERVER_SECRET = 'browser-interop-secret-padded-to-32-bytes';

/**
 * An access token of an end-to-end encrypted room (`huddle-server token
 * --e2ee`) for `identity` in `room`, for a server from `startServer`.
 */
function e2eeToken(serverBin, room, identity) {
  return require('node:child_process')
    .execFileSync(serverBin, ['token', '--room', room, '--identity', identity, '--e2ee'], {
      encoding: 'utf8',
      env: { ...process.env, HUDDLE_SECRET: SERVER_SECRET },
    })
    .trim();
}

/**
 * The last epoch `huddle-call --e2ee` printed in `output` ("e2ee epoch N
 * safety code C"): `{ epoch, safety_code }`, or null.
 */
function lastE2eeEpoch(output) {
  const all = [...output.matchAll(/^e2ee epoch (\d+) safety code (.+)$/gm)];
  const last = all[all.length - 1];
  return last ? { epoch: Number(last[1]), safety_code: last[2].trim() } : null;
}

/** An access token for `identity` in `room` from the development endpoint. */
async function devToken(baseUrl, room, identity) {
  const res = await fetch(`${baseUrl}/dev/token?room=${encodeURIComponent(room)}&identity=${encodeURIComponent(identity)}`);
  assert.equal(res.status, 200, 'GET /dev/token');
  return (await res.json()).token;
}

/**
 * Open the web client in a fresh Chromium and join `room` through its form.
 * The temporary profile directory is pushed onto `profiles` (remove those at
 * the end). Options: `args`, added to CHROMIUM_ARGS; `viewport`, the
 * window's size in CSS pixels (the tiles follow it, and so does the best
 * simulcast layer the SFU sends: a tile under 712x401 gets at most the
 * middle one); `query`, more of the page's URL parameters (`red=0`...).
 */
async function openClient(baseUrl, room, name, profiles, { args = [], viewport = { width: 1280, height: 800 }, query = '' } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `huddle-chromium-${name}-`));
  profiles.push(dir);
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    // Playwright mutes audio by default; inbound audio must be played.
    ignoreDefaultArgs: ['--mute-audio'],
    viewport,
  });
  const client = { name, context, page: null, logs: [] };
  try {
    const page = context.pages()[0] || (await context.newPage());
    client.page = page;
    page.on('console', (m) => client.logs.push(`[${name}] ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => client.logs.push(`[${name}] page error: ${e.message}`));
    await page.addInitScript(loopbackOnlyCandidates);
    // aec=0: no echo cancellation, gain control or noise suppression.
    await page.goto(`${baseUrl}/?aec=0${query ? `&${query}` : ''}`);
    await page.fill('#room', room);
    await page.fill('#name', name);
    await page.click('#join');
    await waitFor(`${name} to join`, 15000, () => page.evaluate(() => window.huddle.state().joined));
  } catch (e) {
    await context.close().catch(() => {});
    if (client.logs.length) console.error(client.logs.slice(-30).join('\n'));
    throw e;
  }
  return client;
}

/**
 * Wait until a page's peer connections are connected: by default both; pass
 * ['publisher'] when the page has nothing to receive (the server offers the
 * subscriber connection only once there are other participants' tracks).
 */
async function waitConnected(client, ms = 15000, which = ['publisher', 'subscriber']) {
  let last;
  await waitFor(`${client.name}'s ${which.join(' and ')} connection(s) to connect`, ms, async () => {
    const st = await client.page.evaluate(() => window.huddle.state());
    if (!st.joined) throw new Error(`${client.name} was disconnected (last seen: ${JSON.stringify(last)}); see the page log above and artifacts/huddle-server.log`);
    last = { publisher: st.publisher, subscriber: st.subscriber };
    return which.every((pc) => st[pc] === 'connected');
  }).catch((e) => {
    throw new Error(`${e.message}: ${JSON.stringify(last)}`);
  });
}

/**
 * A 16-bit PCM WAV, tolerant of a header never finalized: { samples
 * (Int16Array, interleaved), rate, channels } (rate and channels null if it
 * has no fmt chunk before its data).
 */
function readWav(file) {
  const buf = fs.readFileSync(file);
  assert.ok(buf.length >= 44 && buf.toString('ascii', 0, 4) === 'RIFF', `${file} is not a WAV file`);
  let offset = 12;
  let rate = null;
  let channels = null;
  while (offset + 8 <= buf.length) {
    const id = buf.toString('ascii', offset, offset + 4);
    const size = buf.readUInt32LE(offset + 4);
    if (id === 'fmt ') {
      channels = buf.readUInt16LE(offset + 10);
      rate = buf.readUInt32LE(offset + 12);
    } else if (id === 'data') {
      const start = offset + 8;
      // A writer killed before finalizing leaves size 0: take the rest.
      const end = size === 0 || start + size > buf.length ? buf.length : start + size;
      const samples = new Int16Array((end - start) >> 1);
      for (let i = 0; i < samples.length; i++) samples[i] = buf.readInt16LE(start + 2 * i);
      return { samples, rate, channels };
    }
    offset += 8 + size + (size & 1);
  }
  throw new Error(`${file} has no data chunk`);
}

/** Samples of a 16-bit PCM WAV (see readWav). */
function readWavSamples(file) {
  return readWav(file).samples;
}

/** Write mono 16-bit PCM samples (Int16Array) as a canonical 44-byte-header WAV. */
function writeWav(file, samples, sampleRate) {
  const data = samples.length * 2;
  const buf = Buffer.alloc(44 + data);
  buf.write('RIFF', 0, 'ascii');
  buf.writeUInt32LE(36 + data, 4);
  buf.write('WAVE', 8, 'ascii');
  buf.write('fmt ', 12, 'ascii');
  buf.writeUInt32LE(16, 16); // fmt chunk size
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(sampleRate, 24);
  buf.writeUInt32LE(sampleRate * 2, 28); // byte rate
  buf.writeUInt16LE(2, 32); // block align
  buf.writeUInt16LE(16, 34); // bits per sample
  buf.write('data', 36, 'ascii');
  buf.writeUInt32LE(data, 40);
  for (let i = 0; i < samples.length; i++) buf.writeInt16LE(samples[i], 44 + 2 * i);
  fs.writeFileSync(file, buf);
}

function rms(samples) {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return samples.length ? Math.sqrt(sum / samples.length) : 0;
}

/**
 * Chromium in network namespace `ns` of `link` (a netns.js
 * ConstrainedLink), through a wrapper script; `extraArgs` added to the
 * flags, `trials` to its field trials. Its profile directory is pushed
 * onto `profiles`.
 */
async function launchIn(link, ns, name, origin, profiles, viewport, extraArgs = [], trials = '') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `huddle-chromium-${name}-`));
  profiles.push(dir);
  return chromium.launchPersistentContext(dir, {
    executablePath: link.wrapper(ns, CHROMIUM),
    headless: true,
    args: [
      ...CHROMIUM_ARGS,
      // getUserMedia needs a secure context; the namespace's address is not one.
      `--unsafely-treat-insecure-origin-as-secure=${origin}`,
      // Three simulcast layers from a 640x360 camera (Chromium would send two).
      `--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/${trials}`,
      ...extraArgs,
    ],
    ignoreDefaultArgs: ['--mute-audio'],
    viewport,
    // The page's CSP allows no inline style (some tests add one).
    bypassCSP: true,
  });
}

/** Join `room` as `name` on `page`, at `url` (the web client's query included). */
async function joinPage(page, url, room, name, logs) {
  page.on('console', (m) => logs.push(`[${name}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[${name}] page error: ${e.message}`));
  await page.goto(url);
  await page.fill('#room', room);
  await page.fill('#name', name);
  await page.click('#join');
  await waitFor(`${name} to join`, 20000, () => page.evaluate(() => window.huddle.state().joined));
}

/**
 * huddle-server in `link`'s server namespace (HTTP on port 7880, media on
 * 7882 of the namespace's address), in development mode, its log in
 * artifacts/`logName`; `args` added to `serve`'s. Resolves once it answers
 * /healthz, with the process and the page origin.
 */
async function startServerIn(link, serverBin, logName, secret, args = []) {
  const origin = `http://${link.serverAddr}:7880`;
  const [cmd, argv] = link.server(serverBin, [
    'serve', '--dev',
    '--http', `${link.serverAddr}:7880`,
    '--media-udp', `${link.serverAddr}:7882`,
    ...args,
  ]);
  const server = startProcess(cmd, argv, path.join(ARTIFACTS, logName), {
    HUDDLE_SECRET: secret,
    RUST_LOG: process.env.RUST_LOG || 'info',
  });
  await waitFor('the server in its namespace to answer /healthz', 20000, async () => {
    if (server.exitCode !== null) throw new Error(`huddle-server exited (${server.exitCode}): see artifacts/${logName}`);
    return getInNamespace(link, `${origin}/healthz`);
  });
  return { server, origin };
}

/**
 * Two network namespaces (netns.js `ConstrainedLink`, `tag` keeps tests
 * apart) with huddle-server in the server one, everything the test starts
 * torn down after it (`t.after`), and the namespaces checked gone. Returns
 * the test's environment: `link`, `serverBin`, `origin`, and lists the
 * test adds to (`contexts`, `children`, `profiles`, `logs`). `serverArgs`
 * go to huddle-server after its addresses.
 */
async function linkWithServer(t, tag, secret, logName, serverArgs = []) {
  const { ConstrainedLink, requireNetworkTools } = require('./netns');
  requireNetworkTools();
  const serverBin = requiredBinary('HUDDLE_SERVER_BIN');
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install chromium)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const link = new ConstrainedLink(tag);
  const env = { link, serverBin, secret, profiles: [], contexts: [], logs: [], children: [], server: null };
  t.after(async () => {
    try {
      for (const c of env.contexts) await c.close().catch(() => {});
      for (const child of env.children) await stopProcess(child);
      await stopProcess(env.server);
    } finally {
      // Whatever failed above, the namespaces go.
      link.destroy();
      for (const d of env.profiles) fs.rmSync(d, { recursive: true, force: true });
    }
    assert.deepEqual(ConstrainedLink.leftovers(), [], 'the test namespaces are gone');
  });
  const { server, origin } = await startServerIn(link, serverBin, logName, secret, serverArgs);
  env.server = server;
  env.origin = origin;
  return env;
}

/**
 * huddle-call (HUDDLE_CALL_BIN) in namespace `ns` of `env` (from
 * `linkWithServer`), joined to `room` as `identity` with `args` added (it
 * always prints `--stats`). Its output goes to artifacts/`logName`.
 * Returns `{ child, logFile, out(), stats() }`: all it printed so far, and
 * its last `stats {...}` line, parsed.
 */
function huddleCallIn(env, ns, room, identity, args, logName) {
  const callBin = requiredBinary('HUDDLE_CALL_BIN');
  const token = execFileSync(env.serverBin, ['token', '--room', room, '--identity', identity], {
    encoding: 'utf8',
    env: { ...process.env, HUDDLE_SECRET: env.secret },
  }).trim();
  const [cmd, argv] = inNamespaceOf(env.link, ns, callBin, ['--url', env.origin, '--stats', ...args]);
  const logFile = path.join(ARTIFACTS, logName);
  const log = fs.createWriteStream(logFile);
  const child = spawn(cmd, argv, { env: { ...process.env, HUDDLE_TOKEN: token, RUST_LOG: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.exited = new Promise((resolve) => child.once('exit', resolve));
  env.children.push(child);
  let out = '';
  let stats = null;
  child.stdout.on('data', (chunk) => {
    log.write(chunk);
    out += chunk;
    for (const line of String(chunk).split('\n')) {
      if (line.startsWith('stats ')) stats = JSON.parse(line.slice(6));
    }
  });
  child.stderr.on('data', (chunk) => log.write(chunk));
  return { child, logFile, out: () => out, stats: () => stats };
}

/**
 * A Chromium page in namespace `ns` of `env` (from `linkWithServer`),
 * joined to `room` as `name` with the web client's `query`. Returns
 * `{ name, page, id }`.
 */
async function pageInNamespace(env, ns, room, name, query) {
  const browser = await launchIn(env.link, ns, name, env.origin, env.profiles, { width: 960, height: 540 });
  env.contexts.push(browser);
  const page = browser.pages()[0] || (await browser.newPage());
  await joinPage(page, `${env.origin}/?${query}`, room, name, env.logs);
  const id = await page.evaluate(() => window.huddle.state().me);
  return { name, page, id };
}

/**
 * What `client` (an object with a web client `page`) has received from
 * participant `from`: audio packets, video packets and decoded frames.
 */
async function receivedFrom(client, from) {
  const stats = await client.page.evaluate(() => window.huddle.inboundStats());
  const of = (kind) => stats.find((x) => x.kind === kind && x.participantId === from) || {};
  return {
    audio: of('audio').packetsReceived || 0,
    video: of('video').packetsReceived || 0,
    frames: of('video').framesDecoded || 0,
  };
}

/**
 * Wait (30 s at most) until web clients `a` and `b` (objects with `page`,
 * `id` and `name`) each get the other's audio and decoded video.
 */
async function mediaBothWays(a, b) {
  await waitFor('audio and video both ways', 30000, async () => {
    const atB = await receivedFrom(b, a.id);
    const atA = await receivedFrom(a, b.id);
    return atB.audio > 50 && atB.frames > 10 && atA.audio > 50 && atA.frames > 10;
  });
}

/**
 * Over 3 s, web clients `a` and `b` keep getting each other's media: 100
 * audio packets (of 150 sent) and 20 frames at least, each way. Logs the
 * counts, `how` naming the path.
 */
async function mediaKeepsFlowing(a, b, how) {
  const look = async () => ({ atB: await receivedFrom(b, a.id), atA: await receivedFrom(a, b.id) });
  const before = await look();
  await sleep(3000);
  const after = await look();
  const got = (side, k) => after[side][k] - before[side][k];
  console.log(`${how}, 3 s: ${b.name} got ${got('atB', 'audio')} audio packets and ${got('atB', 'frames')} frames from ${a.name}; ${a.name} got ${got('atA', 'audio')} and ${got('atA', 'frames')} from ${b.name}`);
  assert.ok(got('atB', 'audio') >= 100 && got('atA', 'audio') >= 100, 'audio keeps flowing both ways');
  assert.ok(got('atB', 'frames') >= 20 && got('atA', 'frames') >= 20, 'video keeps flowing both ways');
}

/**
 * Wait until `watcher` (a page) sees huddle-call's `identity` in the room;
 * fails if `call` (from `huddleCallIn`) exits first. Returns `{ name, id }`.
 */
async function callInRoom(watcher, call, identity) {
  let found = null;
  await waitFor(`${identity} (huddle-call) in the room`, 20000, async () => {
    if (call.child.exitCode !== null) throw new Error(`huddle-call exited (${call.child.exitCode}): see ${call.logFile}`);
    const st = await watcher.page.evaluate(() => window.huddle.state());
    const p = st.participants.find((x) => x.identity === identity);
    if (p) found = { name: identity, id: p.id };
    return found;
  });
  return found;
}

/**
 * Waits for audio and video both ways between `bob` (a page) and `alice`
 * (`call`, a huddle-call run with `--video`, in the room as `alice`), then
 * checks that it keeps flowing for 3 s, and prints what went each way.
 * huddle-call's test video is synthetic (not decodable): bob counts its
 * packets.
 */
async function callMediaFlows(bob, call, alice, how) {
  const { child, logFile } = call;
  const videoIn = () => {
    const stats = call.stats();
    return stats && stats.videos ? stats.videos.reduce((n, v) => n + (v.kbps || 0), 0) : 0;
  };
  await waitFor('audio and video both ways', 30000, async () => {
    if (child.exitCode !== null) throw new Error(`huddle-call exited (${child.exitCode}): see ${logFile}`);
    const atBob = await receivedFrom(bob, alice.id);
    const stats = call.stats();
    return atBob.audio > 50 && atBob.video > 20 && stats && stats.audio.received > 50 && videoIn() > 0;
  });
  const before = { atBob: await receivedFrom(bob, alice.id), audio: call.stats().audio.received };
  await sleep(3000);
  const after = { atBob: await receivedFrom(bob, alice.id), audio: call.stats().audio.received };
  console.log(`huddle-call ${how}, 3 s: bob got ${after.atBob.audio - before.atBob.audio} audio packets and ${after.atBob.video - before.atBob.video} video packets from alice; alice got ${after.audio - before.audio} audio packets and video at ${videoIn()} kbit/s from bob`);
  assert.ok(after.atBob.audio - before.atBob.audio >= 100, 'bob keeps hearing alice');
  assert.ok(after.atBob.video - before.atBob.video >= 30, 'bob keeps getting alice\'s video');
  assert.ok(after.audio - before.audio >= 100, 'alice keeps hearing bob');
  assert.ok(videoIn() > 0, 'alice keeps getting bob\'s video');
}

/** [bin, args] running `bin args` in namespace `ns` of `link`. */
function inNamespaceOf(link, ns, bin, args) {
  return ns === link.serverNs ? link.server(bin, args) : link.viewer(bin, args);
}

/** GET `url` from inside `link`'s server namespace (the test's own has no route there). */
function getInNamespace(link, url) {
  const [cmd, args] = link.server(process.execPath, ['-e', `fetch(${JSON.stringify(url)}).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`]);
  return new Promise((resolve) => execFile(cmd, args, (err) => resolve(!err)));
}

module.exports = {
  REPO,
  ARTIFACTS,
  CHROMIUM,
  CHROMIUM_ARGS,
  loopbackOnlyCandidates,
  freePort,
  sleep,
  deadline,
  waitFor,
  requiredBinary,
  startProcess,
  stopProcess,
  startServer,
  devToken,
  e2eeToken,
  lastE2eeEpoch,
  openClient,
  waitConnected,
  launchIn,
  joinPage,
  startServerIn,
  linkWithServer,
  huddleCallIn,
  pageInNamespace,
  receivedFrom,
  mediaBothWays,
  mediaKeepsFlowing,
  callInRoom,
  callMediaFlows,
  getInNamespace,
  readWav,
  readWavSamples,
  writeWav,
  rms,
};
