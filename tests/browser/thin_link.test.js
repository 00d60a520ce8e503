// A viewer on a thin link, with real peers: three Chromium publishers send
// simulcast cameras in a meeting, a headless Chromium viewer receives them
// through a link capped with `tc tbf` (tests/browser/netns.js), and the
// SFU's bandwidth estimation and stream allocator must fit the videos to the
// cap: a low layer at best at 250 kb/s, a middle one at 800 kb/s, a high one
// at 2.5 Mb/s, and down again within 2 s when the cap drops to 500 kb/s,
// with the audio intact and the videos not frozen. A second Chromium
// viewer reports with RFC 8888 feedback (its field trial) instead of TWCC,
// through the first three caps.
//
// Part of `node --test tests/browser/` (CI, `.ci/run`). It needs root, or
// sudo without a password, for `ip netns`, `tc` and `nft` (Debian
// iproute2 and nftables); without them it fails before it starts. To run
// it alone, after `cargo build --workspace` and `npm ci --prefix
// tests/browser`:
//
//   HUDDLE_SERVER_BIN=$CARGO_TARGET_DIR/debug/huddle-server \
//   HUDDLE_CALL_BIN=$CARGO_TARGET_DIR/debug/huddle-call \
//     node --test --test-reporter=spec tests/browser/thin_link.test.js
//
// Each run writes its per-second timeline to
// artifacts/bandwidth-*-timeline.json (with
// RUST_LOG=info,huddle_sfu::endpoint::allocation=debug,huddle_sfu::congestion=debug,huddle_sfu::transport_cc=debug
// the server log there shows every allocation, probe and backoff; with
// HUDDLE_PCAP=1, tcpdump records the headers of what reaches the viewer;
// with HUDDLE_CHROMIUM_LOG=1 DEBUG=pw:browser, the Chromium viewer's
// WebRTC log is printed).
//
// The server and the publishers share one namespace (unshaped); the viewer
// has its own, reached over a veth pair with 198.18.0.0/15 addresses. The
// same scenario runs with a Rust viewer (huddle-call --stats).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { ARTIFACTS, requiredBinary, startProcess, stopProcess, waitFor, sleep, launchIn, joinPage: join, getInNamespace } = require('./lib');
const { ConstrainedLink, requireNetworkTools } = require('./netns');

const HTTP_PORT = 7880;
/**
 * The publishers' simulcast layers, kb/s at most (the web client's
 * `layers=`), so that the issue's caps of 250 kb/s, 800 kb/s and 2.5 Mb/s,
 * made for one camera's layers, hold three: low and middle layers are a
 * third of the web client's defaults (150, 500), so that two or three low
 * ones and the audio fit 250 kb/s and three middle ones 800 kb/s; a high
 * layer (up to 900) does not fit 800 kb/s even alone, and 2.5 Mb/s holds
 * one or two with middle ones. The allocator gives the active speaker the
 * best that fits first: with one high layer within 800 kb/s, the speaker
 * would rightly get it there.
 */
const LAYER_KBPS = [60, 180, 900];
const MEDIA_PORT = 7882;
/**
 * The publishers' camera: a 640x360, 15 frame/s file (written by
 * cameraVideo), small enough for three simulcast encoders on two cores.
 * Chromium's built-in test pattern is so simple that its layers cost a few
 * tens of kb/s; this one has what makes a camera's picture cost bits (a
 * textured, moving scene with sensor noise), so the layers run near the
 * rates Chromium gives them, as with a real camera.
 */
const CAMERA = { width: 640, height: 360, fps: 15, seconds: 4 };

/** Write CAMERA's picture as a Y4M file (Chromium's --use-file-for-fake-video-capture). */
function cameraVideo(file) {
  const { width, height, fps, seconds } = CAMERA;
  const fd = fs.openSync(file, 'w');
  const y = Buffer.alloc(width * height);
  const chroma = Buffer.alloc((width * height) / 4);
  // A fixed texture (the "room"), panned a little every frame.
  const texture = crypto.randomBytes(width * height * 2);
  try {
    fs.writeSync(fd, `YUV4MPEG2 W${width} H${height} F${fps}:1 Ip A1:1 C420jpeg\n`);
    for (let f = 0; f < fps * seconds; f++) {
      const noise = crypto.randomBytes(width * height);
      const pan = Math.round(40 * Math.sin((2 * Math.PI * f) / (fps * seconds)));
      const boxX = Math.round((width - 120) * (0.5 + 0.5 * Math.sin((4 * Math.PI * f) / (fps * seconds))));
      for (let row = 0; row < height; row++) {
        for (let col = 0; col < width; col++) {
          const tex = texture[(row * 2 * width + ((col + pan + width) % (2 * width))) % texture.length];
          let v = 60 + ((col + row) >> 3) + (tex >> 2) + (noise[row * width + col] >> 5);
          if (col >= boxX && col < boxX + 120 && row >= 120 && row < 240) v = 220 - (tex >> 3);
          y[row * width + col] = Math.min(235, v);
        }
      }
      fs.writeSync(fd, 'FRAME\n');
      fs.writeSync(fd, y);
      chroma.fill(128 + (f % 8));
      fs.writeSync(fd, chroma);
      chroma.fill(128 - (f % 8));
      fs.writeSync(fd, chroma);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** What each publisher encodes, per layer (for the timeline). */
async function publisherStats(publishers) {
  const out = {};
  for (const p of publishers) {
    const stats = await p.page.evaluate(() => window.huddle.outboundStats());
    out[p.name] = stats
      .filter((s) => s.kind === 'video' && s.rid)
      .map((s) => ({ rid: s.rid, active: s.active, frames: s.framesEncoded, height: s.frameHeight, limit: s.qualityLimitationReason }));
  }
  return out;
}

/** The publishers' encoded heights: height -> rid, per publisher name. */
async function layerHeights(publishers) {
  const stats = await publisherStats(publishers);
  return new Map(Object.entries(stats).map(([name, layers]) => [name, new Map(layers.filter((l) => l.height).map((l) => [l.height, l.rid]))]));
}

/**
 * A Chromium viewer: the web client with the microphone only, in a large
 * window (every tile is big enough for the high layer, so the link alone
 * decides). With `rfc8888`, Chromium's field trial for RFC 8888 congestion
 * control feedback is on: it answers the SFU's `a=rtcp-fb:* ack ccfb` and
 * reports arrivals that way instead of TWCC.
 */
async function chromiumViewer(env, { rfc8888 = false } = {}) {
  const { link, origin, room, profiles, contexts, logs } = env;
  // HUDDLE_CHROMIUM_LOG=1: the viewer logs WebRTC's receive side (packet
  // buffer, reference finder, frame buffer, keyframe requests) to its
  // stderr; run with DEBUG=pw:browser to see it.
  const logArgs = process.env.HUDDLE_CHROMIUM_LOG
    ? ['--enable-logging=stderr', '--v=0',
      '--vmodule=*/webrtc/modules/video_coding/*=3,*/webrtc/video/*=3']
    : [];
  const trials = rfc8888 ? 'WebRTC-RFC8888CongestionControlFeedback/Enabled/' : '';
  const browser = await launchIn(link, link.viewerNs, 'viewer', origin, profiles, { width: 1920, height: 1080 }, logArgs, trials);
  contexts.push(browser);
  const page = browser.pages()[0] || (await browser.newPage());
  await join(page, `${origin}/?aec=0&camera=0`, room, 'viewer', logs);
  return {
    name: rfc8888 ? 'Chromium (RFC 8888 feedback)' : 'Chromium',
    /** What the viewer's subscriber connection negotiated. */
    async check() {
      const sdp = await page.evaluate(() => window.huddle.subscriberSdp());
      assert.ok(sdp && sdp.local && sdp.remote, 'the subscriber connection is negotiated');
      // (Chromium writes the SFU's `a=rtcp-fb:* ack ccfb` out per payload type.)
      const ccfb = /a=rtcp-fb:(\*|\d+) ack ccfb/;
      assert.match(sdp.remote, ccfb, 'the SFU offers RFC 8888 feedback');
      if (rfc8888) {
        assert.match(sdp.local, ccfb, 'Chromium answers with RFC 8888 feedback');
        assert.doesNotMatch(sdp.local, /transport-wide-cc/, 'and without TWCC: the estimate rests on RFC 8888 alone');
      } else {
        assert.match(sdp.local, /transport-wide-cc/, 'Chromium answers with TWCC');
        assert.doesNotMatch(sdp.local, /ack ccfb/, 'and without RFC 8888 feedback (no field trial)');
      }
    },
    /** Per publisher: the layer received, its rate, paused, freezes; audio counters. */
    async look(publishers, before) {
      const inbound = await page.evaluate(() => window.huddle.inboundStats());
      const paused = new Set(await page.evaluate(() => window.huddle.state().paused));
      const heights = await layerHeights(publishers);
      const at = Date.now();
      const videos = publishers.map((p) => {
        const inb = inbound.find((s) => s.kind === 'video' && s.participantId === p.id);
        if (!inb) return { publisher: p.name, rid: null, bytes: 0, kbps: 0, paused: false, freezes: 0, freezeSecs: 0 };
        // For the timeline (what went wrong when a run fails).
        const counters = { lost: inb.packetsLost, nacks: inb.nackCount, plis: inb.pliCount, keyframes: inb.keyFramesDecoded, frames: inb.framesDecoded, assembled: inb.framesReceived, dropped: inb.framesDropped };
        const prev = before && before.videos.find((v) => v.publisher === p.name);
        return {
          publisher: p.name,
          rid: heights.get(p.name).get(inb.frameHeight) || `${inb.frameHeight}p?`,
          bytes: inb.bytesReceived,
          kbps: prev ? Math.round(((inb.bytesReceived - prev.bytes) * 8) / (at - before.at)) : 0,
          paused: paused.has(inb.trackId),
          freezes: inb.freezeCount,
          freezeSecs: inb.totalFreezesDuration,
          ...counters,
        };
      });
      const audio = inbound.filter((s) => s.kind === 'audio');
      return {
        at,
        videos,
        audioReceived: audio.reduce((n, s) => n + s.packetsReceived, 0),
        audioLost: audio.reduce((n, s) => n + Math.max(0, s.packetsLost), 0),
      };
    },
    async close() {},
  };
}

/** A Rust viewer: huddle-call --listen-only --stats in the viewer's namespace. */
async function rustViewer(env) {
  const { link, origin, room, serverBin, secret } = env;
  const callBin = requiredBinary('HUDDLE_CALL_BIN');
  const token = execFileSync(serverBin, ['token', '--room', room, '--identity', 'rust-viewer'], {
    encoding: 'utf8',
    env: { ...process.env, HUDDLE_SECRET: secret },
  }).trim();
  // Shown large, as the Chromium viewer's tiles are: the link alone decides.
  const [cmd, args] = link.viewer(callBin, ['--url', origin, '--listen-only', '--stats', '--video-size', '1280x720']);
  const log = fs.createWriteStream(path.join(ARTIFACTS, 'bandwidth-huddle-call.log'));
  const child = spawn(cmd, args, { env: { ...process.env, HUDDLE_TOKEN: token, RUST_LOG: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  let latest = null;
  let pending = '';
  child.stdout.on('data', (chunk) => {
    log.write(chunk);
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop();
    for (const line of lines) {
      if (line.startsWith('stats ')) latest = JSON.parse(line.slice(6));
    }
  });
  child.stderr.on('data', (chunk) => log.write(chunk));
  await waitFor('huddle-call to report its first stats', 20000, () => {
    if (child.exitCode !== null) throw new Error(`huddle-call exited (${child.exitCode}): see artifacts/bandwidth-huddle-call.log`);
    return latest;
  });
  return {
    name: 'huddle-call',
    async look(publishers) {
      const heights = await layerHeights(publishers);
      const r = latest;
      const videos = publishers.map((p) => {
        const v = r.videos.find((x) => x.from === p.name);
        if (!v) return { publisher: p.name, rid: null, kbps: 0, paused: false, freezes: 0, freezeSecs: 0 };
        return {
          publisher: p.name,
          rid: heights.get(p.name).get(v.height) || `${v.height}p?`,
          kbps: v.kbps,
          paused: v.paused,
          freezes: v.freezes,
          freezeSecs: v.freeze_secs,
        };
      });
      // What the listener loses: packets missing at their turn that no RED
      // copy or in-band FEC made up for (the publishers send RED, which the
      // SFU forwards as is). All missing packets: audioMissing.
      return {
        at: Date.now(),
        videos,
        audioReceived: r.audio.received,
        audioLost: r.audio.unrecovered,
        audioMissing: r.audio.lost,
      };
    },
    async close() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
      log.end();
    },
  };
}

const RANK = { q: 0, h: 1, f: 2 };
const describe = (l) => l.videos.map((v) => `${v.publisher}:${v.paused ? 'paused' : v.rid}@${v.kbps}k`).join(' ');
const showing = (v) => !v.paused && v.rid in RANK;

/**
 * The scenario: three publishers, one viewer (`makeViewer`) behind a link
 * capped at 2.5 Mb/s, then 800 kb/s, then 250 kb/s, 2.5 Mb/s again, then
 * dropped to 500 kb/s. `short`: up to the 250 kb/s cap only.
 */
async function thinLinkCall(t, makeViewer, tag, { short = false } = {}) {
  requireNetworkTools();
  const serverBin = requiredBinary('HUDDLE_SERVER_BIN');
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const link = new ConstrainedLink(tag);
  const secret = 'bandwidth-test-secret-padded-to-32-bytes';
  const env = { link, serverBin, secret, room: 'thin-link', profiles: [], contexts: [], logs: [] };
  let server = null;
  let viewer = null;
  const timeline = [];
  t.after(async () => {
    if (viewer) await viewer.close();
    for (const c of env.contexts) await c.close().catch(() => {});
    await stopProcess(server);
    link.destroy();
    for (const d of env.profiles) fs.rmSync(d, { recursive: true, force: true });
    fs.writeFileSync(path.join(ARTIFACTS, `bandwidth-${tag}-timeline.json`), JSON.stringify(timeline, null, 1));
    assert.deepEqual(ConstrainedLink.leftovers(), [], 'the test namespaces are gone');
  });
  const dump = () => console.error(env.logs.slice(-40).join('\n'));

  env.origin = `http://${link.serverAddr}:${HTTP_PORT}`;
  const [cmd, args] = link.server(serverBin, [
    'serve', '--dev', '--workers', '1',
    '--http', `${link.serverAddr}:${HTTP_PORT}`,
    '--media-udp', `${link.serverAddr}:${MEDIA_PORT}`,
  ]);
  server = startProcess(cmd, args, path.join(ARTIFACTS, `bandwidth-${tag}-server.log`), {
    HUDDLE_SECRET: secret,
    RUST_LOG: process.env.RUST_LOG || 'info',
  });
  await waitFor('the server in its namespace to answer /healthz', 20000, async () => {
    if (server.exitCode !== null) throw new Error(`huddle-server exited (${server.exitCode}): see artifacts/bandwidth-${tag}-server.log`);
    return getInNamespace(link, `${env.origin}/healthz`);
  });

  if (process.env.HUDDLE_PCAP) {
    // Headers of what reaches the viewer (SRTP leaves the RTP header in
    // clear): artifacts/bandwidth-<tag>.pcap, for finding where a stream
    // broke. Needs tcpdump.
    const pcap = path.join(ARTIFACTS, `bandwidth-${tag}.pcap`);
    const [cmd, args] = link.viewer('tcpdump', ['-i', link.viewerIf, '-s', '96', '-B', '16384', '-w', pcap, 'udp']);
    const dump = spawn(cmd, args, { stdio: 'ignore' });
    t.after(() => dump.kill('SIGINT'));
  }
  link.cap(2500);
  // Publishers: one browser, three pages, on the server's side. They do not
  // watch one another (their remote tiles are hidden, so the server sends
  // them no video): only the viewer decides which layers are needed.
  const camera = path.join(os.tmpdir(), `huddle-camera-${process.pid}.y4m`);
  cameraVideo(camera);
  t.after(() => fs.rmSync(camera, { force: true }));
  const pubBrowser = await launchIn(link, link.serverNs, 'publishers', env.origin, env.profiles, { width: 640, height: 480 }, [
    `--use-file-for-fake-video-capture=${camera}`,
  ]);
  env.contexts.push(pubBrowser);
  const publishers = [];
  try {
    for (const name of ['ann', 'bob', 'cyd']) {
      const page = await pubBrowser.newPage();
      await join(page, `${env.origin}/?aec=0&camera=${CAMERA.width}x${CAMERA.height}&layers=${LAYER_KBPS.join(',')}`, env.room, name, env.logs);
      // Hidden remote videos: the page tells the server it shows them not.
      await page.addStyleTag({ content: '.tile:not(.local) video { display: none !important; }' });
      // One speaker, as in most moments of a meeting: the fake microphones
      // all beep alike, which would pass the floor (and the allocator's
      // first share) from one to the next every second.
      if (name !== 'ann') await page.click('#mute-audio');
      const id = await page.evaluate(() => window.huddle.state().me);
      publishers.push({ name, page, id });
    }
    viewer = await makeViewer(env);
    await waitFor(`${viewer.name} to receive three videos`, 30000, async () => {
      const l = await viewer.look(publishers, null);
      return l.videos.every((v) => v.rid !== null);
    });
    if (viewer.check) await viewer.check();
  } catch (e) {
    dump();
    throw e;
  }

  let last = await viewer.look(publishers, null);
  const sample = async (phase) => {
    await sleep(1000);
    const l = await viewer.look(publishers, last);
    last = l;
    timeline.push({ phase, ...l, publishers: await publisherStats(publishers) });
    return l;
  };
  /** Sample until `ok(look)`, for at most `ms`. */
  const settle = async (phase, ms, ok, what) => {
    const end = Date.now() + ms;
    for (;;) {
      const l = await sample(phase);
      if (ok(l)) return l;
      if (Date.now() > end) {
        dump();
        assert.fail(`${viewer.name}, ${phase}: not ${what} within ${ms / 1000} s; last: ${describe(l)}`);
      }
    }
  };

  // What the viewer gets is bounded by the cap (see LAYER_KBPS): at best
  // a low layer at 250 kb/s, a middle one at 800 kb/s, a high one at
  // 2.5 Mb/s. "Settled": the best layer received is that one in two
  // samples running.
  const best = (l) => Math.max(-1, ...l.videos.filter(showing).map((v) => RANK[v.rid]));
  const settled = (phase, rank) => {
    let streak = 0;
    return settle(phase, 10000, (l) => {
      streak = best(l) === rank ? streak + 1 : 0;
      return streak >= 2;
    }, `the best layer received ${Object.keys(RANK)[rank]}, two samples running`);
  };
  await settled('2500k', 2);
  link.cap(800);
  await settled('800k', 1);
  link.cap(250);
  await settled('250k', 0);
  if (short) return;
  link.cap(2500);
  await settled('2500k-again', 2);
  const steady = await sample('2500k-steady');
  for (let i = 0; i < 2; i++) await sample('2500k-steady');

  // The drop: 2.5 Mb/s -> 500 kb/s. Down within 2 s, the audio intact:
  // under 1 % lost. Until the SFU knows of the drop, what it sends overflows
  // the cap's 200 ms queue, audio too, and it cannot know sooner than the
  // feedback about those packets comes back through that queue (about
  // 250 ms: crates/sfu/tests/congestion.rs simulates it). The
  // publishers send RED, so a lost audio packet is usually in the next one:
  // for huddle-call, lost is what its jitter buffer could not make up for
  // (what the listener loses; 1-5 of some 500 packets went missing in runs
  // on 2026-12-07); for Chromium, every packet missing (getStats
  // packetsLost), stricter.
  const beforeDrop = last;
  link.cap(500);
  const dropAt = Date.now();
  await settle('500k', 2000, (l) => best(l) <= 1, 'nothing high');
  const downAfter = Date.now() - dropAt;
  for (let i = 0; i < 8; i++) await sample('500k-steady');
  const after = last;
  const received = after.audioReceived - beforeDrop.audioReceived;
  const lost = after.audioLost - beforeDrop.audioLost;
  const m = after.audioMissing - beforeDrop.audioMissing;
  const missing = after.audioMissing === undefined ? '' : ` (${m} packets missing, ${m - lost} of them made up for by RED/FEC)`;
  console.log(`${viewer.name}: down ${downAfter} ms after the drop to 500 kb/s; audio ${lost} lost of ${received + lost}${missing}; ${describe(after)}`);
  console.log(`${viewer.name}: freezes ${after.videos.map((v) => `${v.publisher} ${v.freezes} (${v.freezeSecs} s)`).join(', ')}`);
  assert.ok(received > 0, 'audio kept arriving after the drop');
  assert.ok(lost / (received + lost) < 0.01, `audio loss across the drop: ${lost} of ${received + lost} (1 % or more)`);

  // Freezes (a frame later than three times the mean interval and 150 ms),
  // once the videos run at 2.5 Mb/s, through the drop and the 8 s at
  // 500 kb/s that follow (about 15 s): under 3 s in all for each video, a
  // fifth of the time. A switch to a lower layer starts at that layer's
  // keyframe, so it need not freeze; what does freeze on a link this thin:
  // the drop itself (packets the cap dropped or queued before the estimate
  // came down, then the lower layer's keyframe behind them: up to about
  // 1.3 s), and a move back up at 500 kb/s (the new layer's keyframe takes
  // 0.5-1 s through the cap). Measured on a 2-core machine, 20 runs
  // (2026-12-06): the worst video of each run froze 0.3-2.3 s (Chromium)
  // and 0.3-1.5 s (huddle-call). Not counted: the start, when the
  // estimate is being found. (huddle-call does not count the gap of a
  // pause the server announced; Chromium does.)
  for (const v of after.videos) {
    const before = steady.videos.find((x) => x.publisher === v.publisher);
    const froze = v.freezeSecs - before.freezeSecs;
    assert.ok(froze < 3, `${v.publisher}'s video froze ${froze.toFixed(3)} s from 2.5 Mb/s on (${v.freezes - before.freezes} freezes)`);
  }
}

test('a Chromium viewer on a capped link gets the simulcast layers that fit', { timeout: 300_000 }, (t) => thinLinkCall(t, chromiumViewer, 'bwc'));

// RFC 8888 feedback instead of TWCC (Chromium's field trial): without it
// the SFU would have no estimate and send the best layers at every cap.
test('a Chromium viewer reporting with RFC 8888 feedback gets the layers that fit', { timeout: 300_000 }, (t) =>
  thinLinkCall(t, (env) => chromiumViewer(env, { rfc8888: true }), 'bwc8888', { short: true }));

test('a Rust viewer (huddle-call) on a capped link gets the simulcast layers that fit', { timeout: 300_000 }, (t) => thinLinkCall(t, rustViewer, 'bwr'));
