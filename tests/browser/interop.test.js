// Interop: two headless Chromium pages (the web client of crates/server/web/) and one Rust
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
const fs = require('node:fs');
const path = require('node:path');
const {
  ARTIFACTS,
  CHROMIUM,
  sleep,
  deadline,
  waitFor,
  requiredBinary,
  startProcess,
  stopProcess,
  startServer,
  devToken,
  openClient,
  waitConnected,
  readWavSamples,
  rms,
} = require('./lib');

const ROOM = 'interop';
/** huddle-call runs this long, then leaves and exits. */
const CALL_SECONDS = 20;

/** inbound-rtp of a page's subscriber connection, by room track id. */
async function inbound(client) {
  const list = await client.page.evaluate(() => window.huddle.inboundStats());
  return new Map(list.filter((s) => s.trackId).map((s) => [s.trackId, s]));
}

/** outbound-rtp video of a page's publisher connection: one entry per simulcast layer. */
async function outboundVideo(client) {
  const list = await client.page.evaluate(() => window.huddle.outboundStats());
  return list.filter((s) => s.kind === 'video');
}

const size = (s) => `${s.frameWidth}x${s.frameHeight}`;

/**
 * One look at simulcast from `pub` to `sub`, over about a second: the
 * publisher's layers before and after, what `sub` receives of `pub`'s video
 * in between. `before` is the previous look (or null). Returns
 * { out, inb, active, best, ok, why }: `active` the layers that encoded frames
 * since `before`, `best` the biggest of them, `ok` whether `sub` received that
 * layer and only that layer (see the test).
 */
async function simulcastLook(pub, sub, pubId, before) {
  const out = await outboundVideo(pub);
  const inb = [...(await inbound(sub)).values()].find((s) => s.kind === 'video' && s.participantId === pubId);
  const after = await outboundVideo(pub);
  const look = { out, inb, active: [], best: null, ok: false, why: 'first look' };
  if (!inb) {
    const all = await sub.page.evaluate(() => window.huddle.inboundStats());
    return { ...look, why: `${sub.name} has no inbound video from ${pub.name}: ${JSON.stringify(all)}` };
  }
  if (!before || !before.inb) return look;
  const prev = new Map(before.out.map((s) => [s.rid, s]));
  look.active = out.filter((s) => s.rid && prev.has(s.rid) && s.framesEncoded > prev.get(s.rid).framesEncoded && s.frameWidth > 0);
  if (look.active.length === 0) return { ...look, why: `no layer encoded frames: ${out.map((s) => `${s.rid} ${s.framesEncoded} frames`).join(', ')}` };
  look.best = look.active.reduce((a, b) => (b.frameWidth * b.frameHeight > a.frameWidth * a.frameHeight ? b : a));
  // The size the publisher encodes the best layer at, just before or just
  // after the inbound sample (Chromium may scale every layer down under load).
  const bestAfter = after.find((s) => s.rid === look.best.rid);
  const bestSizes = new Set([size(look.best), bestAfter ? size(bestAfter) : null]);
  if (!bestSizes.has(size(inb))) {
    const all = [...out, ...after].map((s) => `${s.rid} ${size(s)}`);
    return { ...look, why: `received ${size(inb)}, not the best active layer ${look.best.rid} (${[...bestSizes].join(' / ')}); layers: ${all.join(', ')}` };
  }
  // Only that layer: as many packets arrive as the layer sends, not the sum
  // of several layers (some slack for retransmissions and sampling times).
  const sent = look.best.packetsSent - prev.get(look.best.rid).packetsSent;
  const received = inb.packetsReceived - before.inb.packetsReceived;
  if (received > sent * 1.3 + 10) {
    return { ...look, why: `received ${received} packets while layer ${look.best.rid} sent ${sent}: more than one layer forwarded?` };
  }
  if (received <= 0) return { ...look, why: 'no packets received' };
  return { ...look, ok: true, why: `received ${size(inb)} = layer ${look.best.rid}, ${received} packets of ${sent} sent` };
}

test('two Chromium pages and huddle-call in one room', { timeout: 180_000 }, async (t) => {
  const serverBin = requiredBinary('HUDDLE_SERVER_BIN');
  const callBin = requiredBinary('HUDDLE_CALL_BIN');
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install chromium)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  const profiles = [];
  const clients = [];
  let server;
  let call;
  const wav = path.join(ARTIFACTS, 'huddle-call-received.wav');
  fs.rmSync(wav, { force: true });

  try {
    let httpPort, baseUrl;
    ({ server, httpPort, baseUrl } = await startServer(serverBin));

    // 1. Both browsers join through the page's form.
    const t0 = Date.now();
    // A window large enough that the other's tile wants the best layer
    // (the SFU sends no layer above what a tile shows; at 1280x800 the
    // tiles of three people get the middle one).
    const big = { width: 2560, height: 1600 };
    clients.push(await openClient(baseUrl, ROOM, 'alice', profiles, { viewport: big }));
    clients.push(await openClient(baseUrl, ROOM, 'bob', profiles, { viewport: big }));
    const [alice, bob] = clients;

    // 2. The Rust participant, with a token from the development endpoint.
    const token = await devToken(baseUrl, ROOM, 'rusty');
    call = startProcess(
      callBin,
      ['--url', `ws://127.0.0.1:${httpPort}/ws`, '--token', token, '--seconds', String(CALL_SECONDS), '--record', wav],
      path.join(ARTIFACTS, 'huddle-call.log'),
    );

    // Both peer connections of each page connect (ICE + DTLS with the SFU).
    for (const c of clients) await waitConnected(c);

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

    // 5. Simulcast: each page sends its camera as several layers (rids; see
    //    VIDEO_ENCODINGS in crates/server/web/app.js), and the other page receives exactly
    //    one of them, the best one that is being sent (each page watches one
    //    video). Checked as sizes: what the receiver decodes is the size the
    //    publisher encodes its best active layer at (Chromium scales layers
    //    down under CPU load, so the size is compared with the publisher's
    //    own stats at the same moment, not with a constant), and it gets the
    //    packets of that one layer, not of several.
    for (const c of clients) {
      fs.writeFileSync(path.join(ARTIFACTS, `${c.name}-publisher.sdp.json`), JSON.stringify(await c.page.evaluate(() => window.huddle.publisherSdp()), null, 2));
    }
    for (const [pub, sub] of [[alice, bob], [bob, alice]]) {
      const layers = await waitFor(`${pub.name} to encode at least 2 simulcast layers`, 20000, async () => {
        const v = (await outboundVideo(pub)).filter((s) => s.rid && s.framesEncoded > 0);
        return new Set(v.map((s) => s.rid)).size >= 2 ? v : null;
      }).catch(async (e) => {
        throw new Error(`${e.message}: outbound video ${JSON.stringify(await outboundVideo(pub))}; SDP in artifacts/${pub.name}-publisher.sdp.json`);
      });
      t.diagnostic(`${pub.name} sends ${layers.length} layers: ${layers.map((s) => `${s.rid} ${size(s)} ${s.framesEncoded} frames (${s.qualityLimitationReason})`).join(', ')}`);
      const looks = [];
      let look = null;
      const end = Date.now() + 20000;
      do {
        if (look) await sleep(1000);
        look = await simulcastLook(pub, sub, ids[pub.name], look);
        looks.push(`${new Date().toISOString().slice(11, 23)} ${look.why}`);
      } while (!look.ok && Date.now() < end);
      assert.ok(look.ok, `${sub.name} receives one layer of ${pub.name}'s video, the best active one:\n  ${looks.slice(-8).join('\n  ')}`);
      t.diagnostic(`${sub.name} <- ${pub.name}: ${look.why} (look ${looks.length})`);
    }

    // 6. The server names an active speaker (from the audio levels the
    //    browsers and huddle-call send) and every page marks that tile.
    for (const c of clients) {
      const st = await waitFor(`${c.name} to be told the active speaker`, 10000, async () => {
        const st = await c.page.evaluate(() => window.huddle.state());
        return st.activeSpeaker ? st : null;
      });
      const ids = st.participants.map((p) => p.id);
      assert.ok(ids.includes(st.activeSpeaker), `${c.name}: active speaker ${st.activeSpeaker} is one of ${ids}`);
      const marked = st.participants.filter((p) => p.activeSpeaker).map((p) => p.id);
      assert.deepEqual(marked, [st.activeSpeaker], `${c.name}: exactly the active speaker's tile is marked`);
      t.diagnostic(`${c.name}: active speaker ${st.activeSpeaker}`);
    }

    // 7. The web client in the call.
    await alice.page.screenshot({ path: path.join(ARTIFACTS, 'web-client.png') });

    // 8. alice mutes her microphone through the page: bob is told
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

    // 9. bob leaves through the page; alice sees him go.
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

    // 10. huddle-call recorded a browser's (beeping fake microphone) audio.
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
