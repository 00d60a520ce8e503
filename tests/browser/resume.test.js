// Resuming a session in the web client (first test): alice's page reaches the server
// through a TCP relay on 127.0.0.1 that the test cuts (her WebSocket ends
// without a close frame, as when a phone changes networks or a proxy drops
// an idle connection). The page connects again and resumes: same
// participant, nothing published again, bob never sees her leave, media
// keeps flowing both ways, and signaling works again afterwards (a mute
// reaches bob).
//
// Joining again (second test): the server is killed and started again on
// the same address; both pages join the room again by themselves and hear
// each other again. Third test: the media path alone fails (a UDP relay in
// front of the SFU is stopped); the server gives up the pages' media
// (close 4002), they join again and hear each other once it is back.
//
//   HUDDLE_SERVER_BIN=.../huddle-server HUDDLE_RELAY_BIN=.../examples/netem_relay \
//     node --test tests/browser/resume.test.js
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const lib = require('./lib');

const ROOM = 'resume';

/** A TCP relay on 127.0.0.1 toward `port` whose connections can be cut. */
function tcpRelay(port) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({
      port: server.address().port,
      /** End every connection through the relay. */
      cut() {
        const n = sockets.size;
        for (const s of sockets) s.destroy();
        return n;
      },
      close() {
        for (const s of sockets) s.destroy();
        server.close();
      },
    }));
  });
}

/** Packets `client` has received of `publisher`'s audio. */
async function audioFrom(client, publisher) {
  return (await lib.receivedFrom(client, publisher)).audio;
}

/**
 * alice and bob join `baseUrl`'s room (microphones only) into `clients`;
 * returns their participant ids once each hears the other.
 */
async function twoPagesTalking(baseUrl, clients, profiles) {
  clients.push(await lib.openClient(baseUrl, ROOM, 'alice', profiles, { query: 'camera=0' }));
  clients.push(await lib.openClient(baseUrl, ROOM, 'bob', profiles, { query: 'camera=0' }));
  const [alice, bob] = clients;
  for (const c of clients) await lib.waitConnected(c);
  const ids = {};
  for (const c of clients) ids[c.name] = await c.page.evaluate(() => window.huddle.state().me);
  await lib.waitFor('audio both ways', 15000, async () => (await audioFrom(bob, ids.alice)) > 50 && (await audioFrom(alice, ids.bob)) > 50);
  return ids;
}

test('a Chromium page whose WebSocket drops resumes its session', { timeout: 120_000 }, async () => {
  const serverBin = lib.requiredBinary('HUDDLE_SERVER_BIN');
  assert.ok(fs.existsSync(lib.CHROMIUM), `Chromium not found at ${lib.CHROMIUM} (apt-get install chromium)`);
  fs.mkdirSync(lib.ARTIFACTS, { recursive: true });
  const profiles = [];
  const clients = [];
  let server;
  let relay;
  try {
    let httpPort, baseUrl;
    ({ server, httpPort, baseUrl } = await lib.startServer(serverBin, 'resume-server.log'));
    relay = await tcpRelay(httpPort);
    clients.push(await lib.openClient(`http://127.0.0.1:${relay.port}`, ROOM, 'alice', profiles, { query: 'camera=0' }));
    clients.push(await lib.openClient(baseUrl, ROOM, 'bob', profiles, { query: 'camera=0' }));
    const [alice, bob] = clients;
    for (const c of clients) await lib.waitConnected(c);
    const aliceId = await alice.page.evaluate(() => window.huddle.state().me);
    const bobId = await bob.page.evaluate(() => window.huddle.state().me);
    await lib.waitFor('audio both ways', 15000, async () => (await audioFrom(bob, aliceId)) > 50 && (await audioFrom(alice, bobId)) > 50);
    const tracksOf = async (client, id) => {
      const st = await client.page.evaluate(() => window.huddle.state());
      const p = st.participants.find((x) => x.id === id);
      return p ? p.tracks : null;
    };
    const aliceTracks = await tracksOf(bob, aliceId);
    assert.equal(aliceTracks.length, 1, 'bob sees alice\'s microphone');

    const cut = relay.cut();
    assert.ok(cut >= 2, `the relay carried alice's WebSocket (${cut} sockets cut)`);
    const cutAt = Date.now();
    const heardAtCut = await audioFrom(bob, aliceId);
    // While alice reconnects, bob never loses her.
    await lib.waitFor('alice to resume her session', 15000, async () => {
      assert.ok(await tracksOf(bob, aliceId), 'bob lost alice while she reconnected');
      const st = await alice.page.evaluate(() => window.huddle.state());
      assert.ok(st.joined, 'alice\'s page left the call');
      return st.resumes === 1 && !st.reconnecting;
    }, 50);
    const resumedMs = Date.now() - cutAt;
    const st = await alice.page.evaluate(() => window.huddle.state());
    assert.equal(st.me, aliceId, 'the same participant');
    assert.deepEqual(await tracksOf(bob, aliceId), aliceTracks, 'nothing published again');
    await lib.waitFor('alice\'s audio still reaching bob', 5000, async () => (await audioFrom(bob, aliceId)) > heardAtCut + 25);
    const bobAudio = await audioFrom(alice, bobId);
    await lib.waitFor('bob\'s audio still reaching alice', 5000, async () => (await audioFrom(alice, bobId)) > bobAudio + 25);

    // Signaling after the resume: alice mutes, bob is told.
    await alice.page.click('#mute-audio');
    await lib.waitFor('bob to see alice muted', 5000, async () => {
      const tracks = await tracksOf(bob, aliceId);
      return tracks && tracks.length === 1 && tracks[0].muted;
    });
    const bobState = await bob.page.evaluate(() => window.huddle.state());
    assert.equal(bobState.participants.length, 2, 'bob still sees both');
    console.log(`alice resumed ${resumedMs} ms after her WebSocket was cut`);
  } catch (e) {
    for (const c of clients) if (c.logs.length) console.error(c.logs.slice(-30).join('\n'));
    throw e;
  } finally {
    for (const c of clients) await c.context.close().catch(() => {});
    if (relay) relay.close();
    if (server) await lib.stopProcess(server);
    for (const dir of profiles) fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('Chromium pages join the call again when the server restarts', { timeout: 120_000 }, async () => {
  const serverBin = lib.requiredBinary('HUDDLE_SERVER_BIN');
  assert.ok(fs.existsSync(lib.CHROMIUM), `Chromium not found at ${lib.CHROMIUM} (apt-get install chromium)`);
  fs.mkdirSync(lib.ARTIFACTS, { recursive: true });
  const profiles = [];
  const clients = [];
  let server;
  try {
    let httpPort, baseUrl;
    ({ server, httpPort, baseUrl } = await lib.startServer(serverBin, 'rejoin-server.log'));
    const before = await twoPagesTalking(baseUrl, clients, profiles);
    const [alice, bob] = clients;

    // Killed: no close frame, nothing said; then up again where it was.
    server.kill('SIGKILL');
    await server.exited;
    await lib.waitFor('both pages to see the server gone', 10000, async () => {
      const states = await Promise.all(clients.map((c) => c.page.evaluate(() => window.huddle.state())));
      return states.every((st) => st.joined === false || st.reconnecting);
    }, 50);
    ({ server } = await lib.startServer(serverBin, 'rejoin-server-2.log', { httpPort }));
    const upAt = Date.now();
    const now = {};
    await lib.waitFor('both pages to join again', 20000, async () => {
      for (const c of clients) {
        const st = await c.page.evaluate(() => window.huddle.state());
        if (st.rejoins !== 1 || !st.joined) return false;
        now[c.name] = st.me;
      }
      return true;
    }, 100);
    assert.notEqual(now.alice, before.alice, 'a new session, a new id');
    await lib.waitFor('each to hear the other again', 20000, async () => (await audioFrom(bob, now.alice)) > 25 && (await audioFrom(alice, now.bob)) > 25);
    const backMs = Date.now() - upAt;
    const st = await bob.page.evaluate(() => window.huddle.state());
    assert.deepEqual(st.participants.map((p) => p.id).sort(), [now.alice, now.bob].sort(), 'bob sees the room as it is now');
    console.log(`both pages hear each other again ${backMs} ms after the server was up`);
  } catch (e) {
    for (const c of clients) if (c.logs.length) console.error(c.logs.slice(-30).join('\n'));
    throw e;
  } finally {
    for (const c of clients) await c.context.close().catch(() => {});
    if (server) await lib.stopProcess(server);
    for (const dir of profiles) fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('Chromium pages join the call again when their media path fails', { timeout: 150_000 }, async () => {
  const serverBin = lib.requiredBinary('HUDDLE_SERVER_BIN');
  const relayBin = lib.requiredBinary('HUDDLE_RELAY_BIN');
  assert.ok(fs.existsSync(lib.CHROMIUM), `Chromium not found at ${lib.CHROMIUM} (apt-get install chromium)`);
  fs.mkdirSync(lib.ARTIFACTS, { recursive: true });
  const profiles = [];
  const clients = [];
  const procs = [];
  try {
    // Media crosses a UDP relay (the SFU announces the relay's address);
    // signaling does not. Stopping the relay process cuts the media path
    // alone, as a network change the WebSocket outlives would.
    const mediaPort = await lib.freePort('udp');
    const relayPort = await lib.freePort('udp');
    const relay = lib.startProcess(
      relayBin,
      ['--upstream', `127.0.0.1:${mediaPort}`, '--listen', `127.0.0.1:${relayPort}`],
      path.join(lib.ARTIFACTS, 'media-path-relay.log'),
    );
    procs.push(relay);
    const { server, baseUrl } = await lib.startServer(serverBin, 'media-path-server.log', {
      mediaPort,
      env: { HUDDLE_MEDIA_PUBLIC: `127.0.0.1:${relayPort}`, HUDDLE_WORKERS: '1' },
    });
    procs.push(server);
    const before = await twoPagesTalking(baseUrl, clients, profiles);
    const [alice, bob] = clients;

    relay.kill('SIGSTOP');
    await lib.waitFor('the server to give up both pages\' media, and them to join again', 45000, async () => {
      const states = await Promise.all(clients.map((c) => c.page.evaluate(() => window.huddle.state())));
      return states.every((st) => st.rejoins === 1 && st.joined);
    }, 100);
    relay.kill('SIGCONT');
    const backAt = Date.now();
    const now = {};
    for (const c of clients) now[c.name] = await c.page.evaluate(() => window.huddle.state().me);
    assert.notEqual(now.alice, before.alice, 'a new session, a new id');
    await lib.waitFor('each to hear the other again', 30000, async () => (await audioFrom(bob, now.alice)) > 25 && (await audioFrom(alice, now.bob)) > 25);
    console.log(`both pages hear each other again ${Date.now() - backAt} ms after the media path came back`);
  } catch (e) {
    for (const c of clients) if (c.logs.length) console.error(c.logs.slice(-30).join('\n'));
    throw e;
  } finally {
    for (const c of clients) await c.context.close().catch(() => {});
    for (const p of procs.reverse()) {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGCONT');
      await lib.stopProcess(p);
    }
    for (const dir of profiles) fs.rmSync(dir, { recursive: true, force: true });
  }
});
