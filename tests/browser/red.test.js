// RED audio (RFC 2198) from Chromium to Chromium through the SFU, on a lossy
// path: an impairing relay (examples/netem_relay.rs) in front of the
// server's media port drops 20 % of what the server sends, at random with a
// fixed seed. The speaker's page sends RED (the web client puts audio/red
// before Opus), the SFU forwards it as it is, and the listener's NetEQ
// rebuilds a lost packet from the copy the next one carries. The same call
// again with `red=0` (plain Opus) is the baseline: over the same window, the
// listener conceals a smaller share of what it plays with RED.
//
// Chromium takes the NACK for audio that the SFU offers it, so most packets
// the relay drops are asked for and resent: the listener's own count of
// lost packets is what stays lost after that, and the relay's count (it
// prints it when it stops) is what the path dropped.
//
// Binaries: HUDDLE_SERVER_BIN and HUDDLE_RELAY_BIN (the debug build of
// examples/netem_relay, as .ci/run sets). All traffic stays on 127.0.0.1.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('./lib');

const ROOM = 'red-under-loss';
/** Percentage of the server's datagrams the relay drops. */
const LOSS = 20;
/** Measured after the listener's audio has played this long... */
const SETTLE_MS = 3000;
/** ... over this long. */
const MEASURE_MS = 12000;

/** A page's inbound audio stats. */
async function inboundAudio(client) {
  const all = await client.page.evaluate(() => window.huddle.inboundStats());
  return all.find((s) => s.kind === 'audio');
}

/**
 * The codec the speaker sends its microphone with: the first of the
 * server's answer on the publisher connection (Chromium's getStats names
 * Opus even while it sends RED).
 */
async function sendingCodec(client) {
  const { answer } = await client.page.evaluate(() => window.huddle.publisherSdp());
  const audio = answer.split(/\r?\nm=/).find((m) => m.startsWith('audio '));
  const pt = audio.split(/\r?\n/)[0].split(' ')[3];
  const rtpmap = audio.split(/\r?\n/).find((l) => l.startsWith(`a=rtpmap:${pt} `));
  return rtpmap ? rtpmap.split(' ')[1].split('/')[0].toLowerCase() : null;
}

/**
 * One call, speaker and listener, through the lossy relay; `red` chooses
 * whether the pages send RED. Returns what the listener measured.
 */
async function lossyCall(red) {
  const serverBin = lib.requiredBinary('HUDDLE_SERVER_BIN');
  const relayBin = lib.requiredBinary('HUDDLE_RELAY_BIN');
  fs.mkdirSync(lib.ARTIFACTS, { recursive: true });
  const tag = red ? 'red' : 'opus';
  const mediaPort = await lib.freePort('udp');
  const relayPort = await lib.freePort('udp');
  const procs = [];
  const profiles = [];
  const clients = [];
  let result;
  try {
    procs.push(lib.startProcess(
      relayBin,
      ['--upstream', `127.0.0.1:${mediaPort}`, '--listen', `127.0.0.1:${relayPort}`, '--loss', String(LOSS), '--seed', '2026'],
      path.join(lib.ARTIFACTS, `red-${tag}-relay.log`),
    ));
    const { server, baseUrl } = await lib.startServer(serverBin, `red-${tag}-server.log`, {
      mediaPort,
      env: { HUDDLE_MEDIA_PUBLIC: `127.0.0.1:${relayPort}`, HUDDLE_WORKERS: '1' },
    });
    procs.push(server);
    // Audio only. The listener's own microphone connection does not take
    // part: only its subscriber connection is waited for (through 20 %
    // loss a connection's handshake can take tens of seconds).
    const query = red ? 'camera=0' : 'camera=0&red=0';
    const speaker = await lib.openClient(baseUrl, ROOM, 'speaker', profiles, { query });
    clients.push(speaker);
    const listener = await lib.openClient(baseUrl, ROOM, 'listener', profiles, { query });
    clients.push(listener);
    await lib.waitConnected(listener, 45000, ['subscriber']);
    await lib.waitFor('the speaker\'s audio playing at the listener', 45000, async () => {
      const s = await inboundAudio(listener);
      return s && s.jitterBufferEmittedCount > 0;
    });
    await lib.sleep(SETTLE_MS);
    const first = await inboundAudio(listener);
    await lib.sleep(MEASURE_MS);
    const last = await inboundAudio(listener);
    const d = (k) => last[k] - first[k];
    result = {
      sentCodec: await sendingCodec(speaker),
      lost: d('packetsLost'),
      received: d('packetsReceived'),
      concealed: d('concealedSamples'),
      played: d('totalSamplesReceived'),
    };
  } catch (e) {
    for (const c of clients) if (c.logs.length) console.error(c.logs.slice(-20).join('\n'));
    throw e;
  } finally {
    for (const c of clients) await c.context.close().catch(() => {});
    for (const p of procs.reverse()) await lib.stopProcess(p);
    for (const dir of profiles) fs.rmSync(dir, { recursive: true, force: true });
  }
  // The relay's last line, printed as it stopped.
  const relayLog = fs.readFileSync(path.join(lib.ARTIFACTS, `red-${tag}-relay.log`), 'utf8');
  const m = relayLog.match(/to clients: (\d+) offered, (\d+) lost/);
  assert.ok(m, `the relay printed what it dropped: ${relayLog}`);
  result.relayOffered = Number(m[1]);
  result.relayLost = Number(m[2]);
  return result;
}

test(`RED: a Chromium listener conceals less of the speaker at ${LOSS} % random loss`, { timeout: 240_000 }, async (t) => {
  const withRed = await lossyCall(true);
  const plain = await lossyCall(false);
  const share = (r) => r.concealed / r.played;
  for (const [name, r] of [['RED', withRed], ['Opus', plain]]) {
    t.diagnostic(
      `${name}: sent as ${r.sentCodec}; the relay dropped ${r.relayLost} of ${r.relayOffered} datagrams; ` +
        `lost after resends ${r.lost} of ${r.lost + r.received}; ` +
        `concealed ${(100 * share(r)).toFixed(1)} % of ${r.played} samples`,
    );
  }
  assert.equal(withRed.sentCodec, 'red', 'the speaker sends RED');
  assert.equal(plain.sentCodec, 'opus', 'red=0 sends plain Opus');
  for (const r of [withRed, plain]) {
    assert.ok(r.played > 48000 * 8, `the listener played audio (${r.played} samples)`);
    const lossShare = r.relayLost / r.relayOffered;
    assert.ok(lossShare > LOSS / 200, `the relay dropped packets (${(100 * lossShare).toFixed(1)} %)`);
  }
  // Without RED a lost packet is concealed unless its resend comes in
  // time; with it, the copy in the next packet comes first, and only what
  // neither the copy nor a resend brought is concealed.
  assert.ok(share(withRed) < share(plain) / 2,
    `concealed with RED ${(100 * share(withRed)).toFixed(1)} %, without ${(100 * share(plain)).toFixed(1)} %`);
});
