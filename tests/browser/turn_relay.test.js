// Chromium with `iceTransportPolicy: "relay"` (the web client's relay=1)
// calls through a TURN server that huddle-server hands out: coturn's
// turnserver (Debian `coturn`) on 127.0.0.1, checking the TURN REST API
// credentials huddle-server gives each participant in `joined`
// (--turn-url, --turn-secret = coturn's static-auth-secret). Once over TURN
// on UDP, once on TCP. Checked: both of alice's connections run through a
// relay candidate, and audio and video flow both ways with bob (who takes
// the direct path).
//
//   HUDDLE_SERVER_BIN=.../huddle-server node --test tests/browser/turn_relay.test.js
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const lib = require('./lib');

const ROOM = 'relayed';
const TURN_SECRET = 'turn-rest-secret-for-the-browser-test';

/** Whether TCP port `port` on 127.0.0.1 accepts a connection. */
function listening(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** coturn on 127.0.0.1 with the shared secret; fails loudly when missing. */
async function startCoturn() {
  const port = await lib.freePort('tcp');
  const relayMin = await lib.freePort('udp');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'huddle-coturn-'));
  const turn = lib.startProcess('turnserver', [
    '-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1',
    `--listening-port=${port}`, `--min-port=${relayMin}`, `--max-port=${Math.min(relayMin + 50, 65535)}`,
    '--use-auth-secret', `--static-auth-secret=${TURN_SECRET}`, '--realm=huddle.test',
    '--allow-loopback-peers', '--no-tls', '--no-dtls', '--no-cli', '--simple-log',
    `--log-file=${path.join(dir, 'turn.log')}`, `--pidfile=${path.join(dir, 'turn.pid')}`,
  ], path.join(lib.ARTIFACTS, 'coturn.log'));
  turn.dir = dir;
  await lib.waitFor('turnserver to listen (apt-get install coturn)', 10000, async () => {
    if (turn.exitCode !== null) throw new Error(`turnserver exited (${turn.exitCode}): is coturn installed? see artifacts/coturn.log`);
    return listening(port);
  });
  return { turn, port };
}

const { receivedFrom } = lib;

for (const transport of ['udp', 'tcp']) {
  test(`Chromium with iceTransportPolicy relay calls through TURN over ${transport.toUpperCase()}`, { timeout: 90_000 }, async (t) => {
    const serverBin = lib.requiredBinary('HUDDLE_SERVER_BIN');
    assert.ok(fs.existsSync(lib.CHROMIUM), `Chromium not found at ${lib.CHROMIUM} (apt-get install chromium)`);
    fs.mkdirSync(lib.ARTIFACTS, { recursive: true });
    const profiles = [];
    const clients = [];
    let coturn = null;
    let server = null;
    t.after(async () => {
      for (const c of clients) await c.context.close().catch(() => {});
      await lib.stopProcess(server);
      if (coturn) {
        await lib.stopProcess(coturn.turn);
        fs.rmSync(coturn.turn.dir, { recursive: true, force: true });
      }
      for (const d of profiles) fs.rmSync(d, { recursive: true, force: true });
    });
    coturn = await startCoturn();
    let baseUrl;
    ({ server, baseUrl } = await lib.startServer(serverBin, `huddle-server-turn-${transport}.log`, {
      env: {
        HUDDLE_TURN_URLS: `turn:127.0.0.1:${coturn.port}?transport=${transport}`,
        HUDDLE_TURN_SECRET: TURN_SECRET,
      },
    }));
    const bob = await lib.openClient(baseUrl, ROOM, 'bob', profiles, { query: 'simulcast=0' });
    clients.push(bob);
    const alice = await lib.openClient(baseUrl, ROOM, 'alice', profiles, { query: 'simulcast=0&relay=1' });
    clients.push(alice);
    try {
      const bobId = await bob.page.evaluate(() => window.huddle.state().me);
      const aliceId = await alice.page.evaluate(() => window.huddle.state().me);
      await lib.waitFor('audio and video both ways', 30000, async () => {
        const atBob = await receivedFrom(bob, aliceId);
        const atAlice = await receivedFrom(alice, bobId);
        return atBob.audio > 50 && atBob.frames > 10 && atAlice.audio > 50 && atAlice.frames > 10;
      });
      const paths = await alice.page.evaluate(() => window.huddle.paths());
      console.log(`alice's paths over TURN/${transport}: ${JSON.stringify(paths)}`);
      for (const pc of ['publisher', 'subscriber']) {
        assert.ok(paths[pc], `alice's ${pc} connection has a path`);
        assert.equal(paths[pc].localType, 'relay', `alice's ${pc} connection goes through the relay`);
        assert.equal(paths[pc].relayProtocol, transport, `alice reaches the TURN server over ${transport}`);
      }
      const before = { b: await receivedFrom(bob, aliceId), a: await receivedFrom(alice, bobId) };
      await lib.sleep(3000);
      const after = { b: await receivedFrom(bob, aliceId), a: await receivedFrom(alice, bobId) };
      console.log(`through TURN/${transport}, 3 s: bob got ${after.b.audio - before.b.audio} audio packets and ${after.b.frames - before.b.frames} frames from alice; alice ${after.a.audio - before.a.audio} and ${after.a.frames - before.a.frames} from bob`);
      assert.ok(after.b.audio - before.b.audio >= 100 && after.a.audio - before.a.audio >= 100, 'audio keeps flowing both ways');
      assert.ok(after.b.frames - before.b.frames >= 20 && after.a.frames - before.a.frames >= 20, 'video keeps flowing both ways');
    } catch (e) {
      for (const c of clients) console.error(c.logs.slice(-20).join('\n'));
      throw e;
    }
  });
}
