// Interop: a known WAV file, played by headless Chromium as its microphone
// (--use-file-for-fake-audio-capture), sent by the web client through a real
// huddle-server, received and decoded by the Rust participant (huddle-call
// --listen-only --record), must come out correlated with that file; the
// same again in an end-to-end encrypted room (the page encrypting in its
// worker, huddle-call decrypting).
//
//   HUDDLE_SERVER_BIN=.../huddle-server HUDDLE_CALL_BIN=.../huddle-call \
//     node --test tests/browser/
//
// What is compared (docs/interop.md, "WAV through Chromium to huddle-call"):
// both signals are low-pass filtered and decimated 48 kHz -> 8 kHz; a coarse
// lag is found on 10 ms RMS envelopes (Pearson correlation over all lags),
// then refined to the sample on the 8 kHz waveforms (+-15 ms around it). The
// figure asserted is the normalized cross-correlation of the waveforms at the
// best lag, sum(s*r) / sqrt(sum(s^2) * sum(r^2)) over the whole source file
// (the recording counts as zero where it has nothing), so a missing or
// garbled part of the file lowers it.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const {
  ARTIFACTS,
  CHROMIUM,
  deadline,
  waitFor,
  requiredBinary,
  startProcess,
  stopProcess,
  startServer,
  devToken,
  e2eeToken,
  openClient,
  waitConnected,
  readWavSamples,
  writeWav,
  rms,
} = require('./lib');

const ROOM = 'wav-to-rust';
const RATE = 48000;
/**
 * Silence at the start of the file. Chromium starts playing the file at
 * getUserMedia, before the publisher connection is up: the first 0.7-1 s of
 * it never leaves the page (measured), hence more than DESIGN.md's 1 s.
 */
const LEAD_SECONDS = 3;
/** The file: LEAD_SECONDS of silence, 7 s of signal, 1 s of silence. */
const FILE_SECONDS = LEAD_SECONDS + 8;
/** huddle-call runs this long, then leaves and exits. */
const CALL_SECONDS = 24;
/**
 * Asserted minima (docs/interop.md). Measured over 9 runs: waveform
 * 0.959-0.963, envelope 0.997. For comparison, the same analysis gives
 * waveform 0.01 / envelope 0.14 against Chromium's default beep, 0.01 / 0.62
 * against noise, 0.01 / 0.76 against the recording reversed in time, and
 * 0.62 / 0.88 against the real recording with 20 ms cut out every second
 * (loss without concealment shifts the rest).
 */
const MIN_WAVEFORM_CORRELATION = 0.8;
const MIN_ENVELOPE_CORRELATION = 0.9;

/**
 * The test signal, 48 kHz mono: LEAD_SECONDS of silence, 12 tones of 0.5 s (10 ms
 * raised-cosine ramps, then 50 ms of silence before the next) at different
 * frequencies and levels, a 1 s linear chirp 200 -> 3000 Hz, 1 s of silence.
 * FILE_SECONDS in all; everything is below 3.4 kHz so that it survives the 8 kHz
 * comparison.
 */
function testSignal() {
  const tones = [
    [440, 0.3], [660, 0.15], [300, 0.45], [1000, 0.2], [550, 0.35], [1500, 0.1],
    [350, 0.25], [800, 0.4], [2000, 0.15], [500, 0.3], [1200, 0.25], [700, 0.2],
  ];
  const seg = RATE / 2;
  const ramp = RATE / 100;
  const gap = RATE / 20;
  const out = new Float64Array(RATE * FILE_SECONDS);
  let at = RATE * LEAD_SECONDS;
  for (const [freq, amp] of tones) {
    const len = seg - gap;
    for (let i = 0; i < len; i++) {
      const edge = Math.min(i, len - 1 - i);
      const env = edge < ramp ? 0.5 - 0.5 * Math.cos((Math.PI * edge) / ramp) : 1;
      out[at + i] = amp * env * Math.sin((2 * Math.PI * freq * i) / RATE);
    }
    at += seg;
  }
  // Chirp: phase = 2*pi*(f0*t + (f1-f0)*t^2/(2T)).
  const [f0, f1, T] = [200, 3000, 1];
  for (let i = 0; i < RATE * T; i++) {
    const t = i / RATE;
    const edge = Math.min(i, RATE * T - 1 - i);
    const env = edge < ramp ? 0.5 - 0.5 * Math.cos((Math.PI * edge) / ramp) : 1;
    out[at + i] = 0.3 * env * Math.sin(2 * Math.PI * (f0 * t + ((f1 - f0) * t * t) / (2 * T)));
  }
  return Int16Array.from(out, (x) => Math.round(x * 32767));
}

/** Low-pass (windowed sinc, 3.4 kHz, 97 taps, Blackman) and keep 1 in 6: 48 -> 8 kHz. */
function decimateTo8k(samples) {
  const taps = 97;
  const half = (taps - 1) / 2;
  const fc = 3400 / RATE;
  const h = new Float64Array(taps);
  let sum = 0;
  for (let k = 0; k < taps; k++) {
    const n = k - half;
    const sinc = n === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * n) / (Math.PI * n);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * k) / (taps - 1)) + 0.08 * Math.cos((4 * Math.PI * k) / (taps - 1));
    h[k] = sinc * w;
    sum += h[k];
  }
  const out = new Float64Array(Math.floor(samples.length / 6));
  for (let j = 0; j < out.length; j++) {
    const c = j * 6;
    let acc = 0;
    for (let k = 0; k < taps; k++) {
      const i = c + k - half;
      if (i >= 0 && i < samples.length) acc += h[k] * samples[i];
    }
    out[j] = acc / sum;
  }
  return out;
}

/** RMS per frame of `frame` samples. */
function envelope(x, frame) {
  const out = new Float64Array(Math.floor(x.length / frame));
  for (let j = 0; j < out.length; j++) {
    let s = 0;
    for (let i = j * frame; i < (j + 1) * frame; i++) s += x[i] * x[i];
    out[j] = Math.sqrt(s / frame);
  }
  return out;
}

/** Pearson correlation of src[n] and rec[n + lag] over all n of src (rec is 0 outside). */
function pearsonAt(src, rec, lag) {
  const n = src.length;
  let ms = 0;
  let mr = 0;
  for (let i = 0; i < n; i++) {
    ms += src[i];
    const j = i + lag;
    mr += j >= 0 && j < rec.length ? rec[j] : 0;
  }
  ms /= n;
  mr /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const j = i + lag;
    const a = src[i] - ms;
    const b = (j >= 0 && j < rec.length ? rec[j] : 0) - mr;
    sxy += a * b;
    sxx += a * a;
    syy += b * b;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : 0;
}

/** sum(src[n] * rec[n + lag]) / sqrt(sum(src^2) * sum(rec[n + lag]^2)) over all n of src. */
function nccAt(src, rec, lag) {
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < src.length; i++) {
    const j = i + lag;
    const b = j >= 0 && j < rec.length ? rec[j] : 0;
    sxy += src[i] * b;
    sxx += src[i] * src[i];
    syy += b * b;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : 0;
}

/**
 * Where the source sits in the recording and how well it matches, at 8 kHz.
 * Returns { lag (8 kHz samples: rec[n + lag] ~ src[n]), envelope, waveform,
 * perSecond (waveform NCC of each second of the source at that lag) }.
 */
function compare(source48, recorded48) {
  const src = decimateTo8k(source48);
  const rec = decimateTo8k(recorded48);
  const FRAME = 80; // 10 ms at 8 kHz
  const es = envelope(src, FRAME);
  const er = envelope(rec, FRAME);
  let best = { lag: 0, r: -Infinity };
  for (let lag = -es.length + 1; lag < er.length; lag++) {
    const r = pearsonAt(es, er, lag);
    if (r > best.r) best = { lag, r };
  }
  let fine = { lag: best.lag * FRAME, r: -Infinity };
  for (let d = -120; d <= 120; d++) {
    const lag = best.lag * FRAME + d;
    const r = nccAt(src, rec, lag);
    if (r > fine.r) fine = { lag, r };
  }
  const perSecond = [];
  for (let s = 0; s + 8000 <= src.length; s += 8000) {
    const part = src.subarray(s, s + 8000);
    perSecond.push(rms(part) > 1 ? nccAt(part, rec, fine.lag + s) : null);
  }
  return { lag: fine.lag, envelope: best.r, waveform: fine.r, perSecond, srcLength: src.length, recLength: rec.length };
}

test('a WAV played by Chromium reaches huddle-call intact', { timeout: 120_000 }, (t) => wavToRust(t, { e2ee: false }));

// The same in an end-to-end encrypted room: the page encrypts each Opus
// frame in its worker (WebAssembly), huddle-call decrypts it; what the
// comparison asks is unchanged.
test('a WAV played by Chromium reaches huddle-call intact, end-to-end encrypted', { timeout: 120_000 }, (t) =>
  wavToRust(t, { e2ee: true }));

async function wavToRust(t, { e2ee }) {
  const serverBin = requiredBinary('HUDDLE_SERVER_BIN');
  const callBin = requiredBinary('HUDDLE_CALL_BIN');
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install chromium)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  const tag = e2ee ? 'wav-to-rust-e2ee' : 'wav-to-rust';
  const sourceWav = path.join(ARTIFACTS, `${tag}-source.wav`);
  const recordedWav = path.join(ARTIFACTS, `${tag}-received.wav`);
  const callLog = path.join(ARTIFACTS, `${tag}-huddle-call.log`);
  const source = testSignal();
  writeWav(sourceWav, source, RATE);
  fs.rmSync(recordedWav, { force: true });

  const profiles = [];
  let client;
  let server;
  let call;
  const started = Date.now();
  try {
    let httpPort, baseUrl;
    ({ server, httpPort, baseUrl } = await startServer(serverBin, `${tag}-huddle-server.log`));

    // 1. huddle-call first, listening only, so that it is there before the
    //    page's microphone (the file, played once) starts.
    const token = e2ee ? e2eeToken(serverBin, ROOM, 'rusty') : await devToken(baseUrl, ROOM, 'rusty');
    call = startProcess(
      callBin,
      ['--url', `ws://127.0.0.1:${httpPort}/ws`, '--token', token, '--listen-only',
        '--seconds', String(CALL_SECONDS), '--record', recordedWav, ...(e2ee ? ['--e2ee'] : [])],
      callLog,
    );
    const callSays = (what) => fs.existsSync(callLog) && fs.readFileSync(callLog, 'utf8').includes(what);
    await waitFor('huddle-call to join', 15000, () => {
      if (call.exitCode !== null) throw new Error(`huddle-call exited (${call.exitCode}): see ${callLog}`);
      return callSays('joined');
    });

    // 2. The page, its microphone the file (played once, then silence),
    //    joins with aec=0: no echo cancellation, gain control, noise suppression.
    client = await openClient(baseUrl, ROOM, 'wavplayer', profiles, {
      args: [`--use-file-for-fake-audio-capture=${sourceWav}%noloop`],
      query: e2ee ? 'e2ee=1' : '',
    });
    const joinedAt = Date.now();
    // huddle-call publishes nothing: the page has no subscriber connection.
    await waitConnected(client, 15000, ['publisher']);
    await waitFor('huddle-call to receive the page\'s audio', 15000, () => callSays('receiving Audio'));
    t.diagnostic(`page joined ${joinedAt - started} ms after start, huddle-call receiving ${Date.now() - joinedAt} ms after that`);

    // 3. huddle-call leaves by itself after CALL_SECONDS, long after the
    //    file has played.
    const code = await Promise.race([call.exited, deadline((CALL_SECONDS + 15) * 1000, 'timeout')]);
    assert.equal(code, 0, `huddle-call exits 0 (see ${callLog})`);

    // 4. Compare.
    const recorded = readWavSamples(recordedWav);
    const level = rms(recorded);
    t.diagnostic(`huddle-call recorded ${(recorded.length / RATE).toFixed(2)} s, RMS ${level.toFixed(0)} (source RMS ${rms(source).toFixed(0)})`);
    assert.ok(recorded.length > (FILE_SECONDS - LEAD_SECONDS) * RATE, `huddle-call recorded more than the file's ${FILE_SECONDS - LEAD_SECONDS} s of signal (${(recorded.length / RATE).toFixed(2)} s)`);
    assert.ok(level > 100, `huddle-call's recording is not silent (RMS ${level.toFixed(1)})`);

    const t1 = Date.now();
    const c = compare(source, recorded);
    const seen =
      `lag ${(c.lag / 8).toFixed(1)} ms, waveform NCC ${c.waveform.toFixed(3)}, envelope r ${c.envelope.toFixed(3)}, ` +
      `per second [${c.perSecond.map((x) => (x === null ? '-' : x.toFixed(2))).join(' ')}], ` +
      `recording ${(c.recLength / 8000).toFixed(2)} s (compared in ${Date.now() - t1} ms)`;
    t.diagnostic(seen);
    // Where the signal (not the silence around it) is in the recording.
    const signalStart = (c.lag + LEAD_SECONDS * 8000) * 6;
    const signalEnd = (c.lag + (FILE_SECONDS - 1) * 8000) * 6;
    assert.ok(signalStart >= 0 && signalEnd <= recorded.length,
      `the file's whole signal (not its silence) is inside the recording: 48 kHz samples ${signalStart}..${signalEnd} of ${recorded.length} (${seen})`);
    const aligned = recorded.subarray(signalStart, signalEnd);
    assert.ok(rms(aligned) > 100, `the recording where the file's signal should be is not silent (RMS ${rms(aligned).toFixed(1)}; ${seen})`);
    assert.ok(c.envelope > MIN_ENVELOPE_CORRELATION,
      `envelope correlation > ${MIN_ENVELOPE_CORRELATION}: ${seen}`);
    assert.ok(c.waveform > MIN_WAVEFORM_CORRELATION,
      `waveform correlation > ${MIN_WAVEFORM_CORRELATION}: ${seen}`);
    t.diagnostic(`whole test ${Date.now() - started} ms`);
  } catch (e) {
    if (client && client.logs.length) console.error(client.logs.slice(-30).join('\n'));
    throw e;
  } finally {
    if (client) await client.context.close().catch(() => {});
    await stopProcess(call);
    await stopProcess(server);
    for (const dir of profiles) fs.rmSync(dir, { recursive: true, force: true });
  }
}
