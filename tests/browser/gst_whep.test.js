// Interop: a GStreamer webrtcbin (libnice) WHEP viewer keeps all its media.
//
// huddle-call publishes its test tone into a room; gst_whep_viewer.py (an
// independent WebRTC stack: GStreamer's webrtcbin with libnice ICE, Debian
// packages) watches the room through WHEP, receive-only, for VIEW_SECONDS.
// After ICE nomination such a viewer sends the SFU nothing but RTCP receiver
// reports (about every 5 s) and a STUN keepalive every 25 s; the SFU must
// keep the connection alive with its own consent checks (RFC 7675) and
// forward every packet. Before it did, this viewer received about 2/3 of the
// audio, in bursts between its receiver reports.
//
//   HUDDLE_SERVER_BIN=.../huddle-server HUDDLE_CALL_BIN=.../huddle-call \
//     node --test tests/browser/gst_whep.test.js
//
// HUDDLE_GST_PYTHON (default /usr/bin/python3) is a Python with the GStreamer
// bindings (python3-gi, gir1.2-gst-plugins-bad-1.0) and webrtcbin
// (gstreamer1.0-plugins-bad, gstreamer1.0-nice); a missing one fails the
// test. Traffic stays on 127.0.0.1; every wait is bounded; everything
// started is stopped.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const {
  ARTIFACTS,
  deadline,
  waitFor,
  requiredBinary,
  startProcess,
  stopProcess,
  startServer,
} = require('./lib');

const ROOM = 'gst-whep';
const SECRET = 'browser-interop-secret-padded-to-32-bytes'; // what startServer gives the server
/** The viewer watches this long once connected, then DELETEs its session. */
const VIEW_SECONDS = 30;
/** huddle-call publishes this long: past the end of the viewer's window. */
const PUBLISH_SECONDS = VIEW_SECONDS + 15;
/** Seconds at the start of the window not judged (jitter buffer, first packets). */
const WARMUP_SECONDS = 2;
/** huddle-call's Opus: 20 ms frames. */
const PACKETS_PER_SECOND = 50;

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

/** Fails loudly unless `python` has GStreamer's bindings and webrtcbin. */
function checkGstreamer(python) {
  const probe = [
    'import gi',
    "gi.require_version('Gst', '1.0')",
    "gi.require_version('GstWebRTC', '1.0')",
    "gi.require_version('GstSdp', '1.0')",
    'from gi.repository import Gst, GstWebRTC, GstSdp',
    'Gst.init(None)',
    "missing = [e for e in ('webrtcbin', 'nicesrc', 'rtpopusdepay', 'opusdec') if Gst.ElementFactory.find(e) is None]",
    "assert not missing, 'missing GStreamer elements: ' + ', '.join(missing)",
  ].join('\n');
  try {
    execFileSync(python, ['-c', probe], { stdio: 'pipe' });
  } catch (e) {
    assert.fail(
      `${python} cannot run webrtcbin (apt-get install gstreamer1.0-plugins-bad gstreamer1.0-nice ` +
        `gstreamer1.0-plugins-good gstreamer1.0-plugins-base python3-gi gir1.2-gst-plugins-bad-1.0; ` +
        `HUDDLE_GST_PYTHON names another Python): ${e.stderr || e.message}`,
    );
  }
}

test('a GStreamer webrtcbin (libnice) WHEP viewer receives all the audio', { timeout: 150_000 }, async (t) => {
  const serverBin = requiredBinary('HUDDLE_SERVER_BIN');
  const callBin = requiredBinary('HUDDLE_CALL_BIN');
  const python = process.env.HUDDLE_GST_PYTHON || '/usr/bin/python3';
  checkGstreamer(python);
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  let server;
  let call;
  let viewer;
  const viewerLog = path.join(ARTIFACTS, 'gst-whep-viewer.log');
  try {
    let baseUrl, httpPort;
    ({ server, baseUrl, httpPort } = await startServer(serverBin, 'huddle-server-gst.log'));
    const pubToken = mintToken(serverBin, ['--room', ROOM, '--identity', 'tone', '--subscribe', 'false']);
    const viewerToken = mintToken(serverBin, ['--room', ROOM, '--identity', 'gst-viewer', '--publish', 'false']);
    const admin = mintToken(serverBin, ['--identity', 'ops', '--admin']);

    // 1. huddle-call publishes its tone.
    call = startProcess(
      callBin,
      ['--url', `ws://127.0.0.1:${httpPort}/ws`, '--token', pubToken, '--seconds', String(PUBLISH_SECONDS)],
      path.join(ARTIFACTS, 'huddle-call-gst.log'),
    );
    await waitFor('huddle-call to publish its audio', 15_000, async () => {
      if (call.exitCode !== null) throw new Error(`huddle-call exited (${call.exitCode}): see artifacts/huddle-call-gst.log`);
      const list = await participants(baseUrl, admin);
      return list.some((p) => p.identity === 'tone' && p.tracks.some((tr) => tr.kind === 'audio'));
    });

    // 2. webrtcbin watches through WHEP for VIEW_SECONDS, then DELETEs.
    viewer = startProcess(
      python,
      [path.join(__dirname, 'gst_whep_viewer.py'), '--endpoint', `${baseUrl}/whep`, '--token', viewerToken,
        '--seconds', String(VIEW_SECONDS), '--connect-timeout', '20'],
      viewerLog,
      // Warnings from GStreamer into the log, for a failure's post-mortem.
      { GST_DEBUG: process.env.GST_DEBUG || '2' },
    );
    const events = () =>
      fs.readFileSync(viewerLog, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    await waitFor('the webrtcbin viewer to connect', 30_000, () => {
      if (viewer.exitCode !== null) throw new Error(`the viewer exited (${viewer.exitCode}): see artifacts/gst-whep-viewer.log`);
      return events().find((e) => e.event === 'connected');
    });
    const names = (await participants(baseUrl, admin)).map((p) => p.identity).sort();
    assert.deepEqual(names, ['gst-viewer', 'tone'], 'the WHEP viewer is in the room');

    const code = await Promise.race([viewer.exited, deadline(VIEW_SECONDS * 1000 + 30_000, 'timeout')]);
    const tail = () => fs.readFileSync(viewerLog, 'utf8').split('\n').slice(-15).join('\n');
    assert.equal(code, 0, `the viewer's exit: ${code}; artifacts/gst-whep-viewer.log ends:\n${tail()}`);
    const deleted = events().find((e) => e.event === 'deleted');
    assert.equal(deleted && deleted.status, 200, 'DELETE of the WHEP session');
    const result = events().find((e) => e.event === 'result');
    assert.ok(result, `the viewer printed no result:\n${tail()}`);
    t.diagnostic(`webrtcbin viewer: ${JSON.stringify(result)}`);

    // 3. Every second of the window after the warm-up had audio, and the
    //    packets add up to (nearly) all that was sent.
    const judged = result.per_second.slice(WARMUP_SECONDS);
    assert.equal(judged.length, VIEW_SECONDS - WARMUP_SECONDS);
    const empty = judged.map((n, i) => (n === 0 ? i + WARMUP_SECONDS : null)).filter((i) => i !== null);
    assert.deepEqual(empty, [], `seconds of the window without a packet: ${empty} (per second: ${result.per_second})`);
    const expected = judged.length * PACKETS_PER_SECOND;
    const got = judged.reduce((a, b) => a + b, 0);
    assert.ok(got >= 0.9 * expected, `packets after the warm-up: ${got} of ${expected} (per second: ${result.per_second})`);
    assert.ok(result.longest_gap_s < 2, `longest gap between packets: ${result.longest_gap_s} s`);
    assert.ok(
      result.decoded_s >= 0.9 * (VIEW_SECONDS - WARMUP_SECONDS),
      `decoded audio: ${result.decoded_s} s in a ${VIEW_SECONDS} s window`,
    );

    // 4. The DELETE took the viewer out of the room.
    await waitFor('the viewer to leave the room', 5000, async () =>
      (await participants(baseUrl, admin)).every((p) => p.identity !== 'gst-viewer'));
  } finally {
    await stopProcess(viewer);
    await stopProcess(call);
    await stopProcess(server);
  }
});
