#!/usr/bin/env node
// The reference jitter buffer, measured: headless Chromium (libwebrtc's NetEQ)
// receives speech from huddle-call through a real huddle-server with an
// impairing relay (examples/netem_relay.rs) in front of it, and its getStats
// counters are read over a window of the call. docs/audio-quality.md,
// "NetEQ in the same conditions", puts them beside huddle's jitter buffer.
//
//   cargo build --release -p huddle-rtc-server -p huddle-cli && cargo build --release --example netem_relay
//   (cd tests/browser && npm ci)
//   node scripts/neteq_reference.js --input natural.wav --loss 5
//   node scripts/neteq_reference.js --input natural.wav --loss 5 --jitter 30 --json out.json
//
// Binaries: HUDDLE_SERVER_BIN, HUDDLE_CALL_BIN, HUDDLE_RELAY_BIN, by default
// the release builds under $CARGO_TARGET_DIR (or ./target). Chromium:
// CHROMIUM_BIN or /usr/bin/chromium. Logs go to artifacts/neteq-*.log. All
// traffic stays on 127.0.0.1.
//
// Figures, over the measured window (after a settling time):
//   mean delay   = delta jitterBufferDelay / delta jitterBufferEmittedCount:
//                  per sample, from the arrival of its packet to its leaving
//                  the buffer for playout (W3C webrtc-stats);
//   target       = the same for jitterBufferTargetDelay;
//   lost         = delta packetsLost (what the relay dropped, as RTP sees it);
//   concealment  = delta concealmentEvents, and concealed ms;
//   fec packets  = delta fecPacketsReceived (Chromium counts Opus in-band FEC
//                  it decoded here).
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const lib = require('../tests/browser/lib');

const ROOM = 'neteq-reference';

function usage(msg) {
  if (msg) console.error(`error: ${msg}`);
  console.error(
    'usage: node scripts/neteq_reference.js --input FILE.wav [--loss PERCENT] [--burst PACKETS]\n' +
      '         [--jitter MS] [--seconds S] [--settle S] [--seed N] [--json FILE]',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { loss: 0, burst: null, jitter: 0, seconds: 30, settle: 8, seed: 2026, input: null, json: null };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    if (!(key in opts) || value === undefined) usage(`bad argument ${argv[i]}`);
    opts[key] = ['input', 'json'].includes(key) ? value : Number(value);
    if (opts[key] !== value && !Number.isFinite(opts[key])) usage(`--${key} ${value} is not a number`);
  }
  if (!opts.input) usage('--input is required');
  if (opts.seconds <= 0 || opts.seconds > 600) usage('--seconds must be in (0, 600]');
  return opts;
}

function binary(envVar, name) {
  if (process.env[envVar]) return lib.requiredBinary(envVar);
  const target = process.env.CARGO_TARGET_DIR || path.join(lib.REPO, 'target');
  const bin = path.join(target, 'release', name);
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} does not exist: cargo build --release -p huddle-rtc-server -p huddle-cli && cargo build --release --example netem_relay (or set ${envVar})`);
  }
  return bin;
}

/** The input repeated until it lasts `seconds`, as a temporary WAV. */
function loopedInput(file, seconds) {
  const { samples: one, rate, channels } = lib.readWav(file);
  if (channels !== 1 || !rate) throw new Error(`${file}: only mono WAV files`);
  const copies = Math.ceil((seconds * rate) / one.length);
  const all = new Int16Array(one.length * copies);
  for (let k = 0; k < copies; k++) all.set(one, k * one.length);
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'huddle-neteq-')), 'looped.wav');
  lib.writeWav(out, all, rate);
  return out;
}

/** The listener's inbound audio stats (the one remote audio track). */
async function inboundAudio(client) {
  const list = await client.page.evaluate(() => window.huddle.inboundStats());
  return list.find((s) => s.kind === 'audio') || null;
}

function summarize(a, b, opts) {
  const d = (k) => b[k] - a[k];
  const emitted = d('jitterBufferEmittedCount');
  if (emitted <= 0) throw new Error('Chromium emitted no audio in the window');
  return {
    loss_percent: opts.loss,
    burst_packets: opts.burst,
    jitter_ms: opts.jitter,
    window_s: opts.seconds,
    packets_received: d('packetsReceived'),
    packets_lost: d('packetsLost'),
    mean_delay_ms: (1000 * d('jitterBufferDelay')) / emitted,
    mean_target_ms: (1000 * d('jitterBufferTargetDelay')) / emitted,
    concealment_events: d('concealmentEvents'),
    concealed_ms: d('concealedSamples') / 48,
    fec_packets: d('fecPacketsReceived'),
    accelerated_ms: d('removedSamplesForAcceleration') / 48,
    decelerated_ms: d('insertedSamplesForDeceleration') / 48,
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const serverBin = binary('HUDDLE_SERVER_BIN', 'huddle-server');
  const callBin = binary('HUDDLE_CALL_BIN', 'huddle-call');
  const relayBin = binary('HUDDLE_RELAY_BIN', path.join('examples', 'netem_relay'));
  fs.mkdirSync(lib.ARTIFACTS, { recursive: true });
  const input = loopedInput(opts.input, opts.seconds + opts.settle + 40);

  const mediaPort = await lib.freePort('udp');
  const relayPort = await lib.freePort('udp');
  const procs = [];
  const profiles = [];
  let client = null;
  try {
    const relayArgs = ['--upstream', `127.0.0.1:${mediaPort}`, '--listen', `127.0.0.1:${relayPort}`,
      '--loss', String(opts.loss), '--jitter', String(opts.jitter), '--seed', String(opts.seed)];
    if (opts.burst) relayArgs.push('--burst', String(opts.burst));
    const relay = lib.startProcess(relayBin, relayArgs, path.join(lib.ARTIFACTS, 'neteq-relay.log'));
    procs.push(relay);
    const { server, httpPort, baseUrl } = await lib.startServer(serverBin, 'neteq-server.log', {
      mediaPort,
      env: { HUDDLE_MEDIA_PUBLIC: `127.0.0.1:${relayPort}`, HUDDLE_WORKERS: '1' },
    });
    procs.push(server);

    client = await lib.openClient(baseUrl, ROOM, 'listener', profiles);
    const token = await lib.devToken(baseUrl, ROOM, 'speaker');
    const call = lib.startProcess(
      callBin,
      ['--url', `ws://127.0.0.1:${httpPort}/ws`, '--token', token, '--input', input,
        '--seconds', String(Math.ceil(opts.seconds + opts.settle + 30))],
      path.join(lib.ARTIFACTS, 'neteq-huddle-call.log'),
    );
    procs.push(call);
    await lib.waitConnected(client, 30000);
    await lib.waitFor('audio from huddle-call in Chromium', 30000, async () => {
      const s = await inboundAudio(client);
      return s && s.jitterBufferEmittedCount > 0;
    });
    console.error(`settling ${opts.settle} s, then measuring ${opts.seconds} s`);
    await lib.sleep(opts.settle * 1000);
    const first = await inboundAudio(client);
    await lib.sleep(opts.seconds * 1000);
    const last = await inboundAudio(client);
    const result = summarize(first, last, opts);
    console.log(JSON.stringify(result, null, 2));
    const f = (x) => x.toFixed(1);
    console.log(
      `| ${opts.loss}% loss${opts.burst ? ` (bursts of ${opts.burst})` : ''}, 0-${opts.jitter} ms jitter ` +
        `| ${f(result.mean_delay_ms)} | ${f(result.mean_target_ms)} | ${result.packets_lost} / ` +
        `${result.packets_received + result.packets_lost} | ${result.concealment_events} ` +
        `(${f(result.concealed_ms)} ms) | ${result.fec_packets} | ${f(result.accelerated_ms)} / ${f(result.decelerated_ms)} |`,
    );
    if (opts.json) fs.writeFileSync(opts.json, JSON.stringify(result, null, 2));
  } finally {
    if (client) await client.context.close().catch(() => {});
    for (const p of procs.reverse()) await lib.stopProcess(p);
    for (const dir of profiles) fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(path.dirname(input), { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
