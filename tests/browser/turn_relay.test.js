// Chromium with `iceTransportPolicy: "relay"` (the web client's relay=1)
// calls through huddle-server's embedded TURN server (--turn-listen,
// --turn-tls-listen), with the TURN REST credentials the server gives each
// participant in `joined`:
//
// - over UDP, on loopback;
// - over TCP, from a network namespace that lets no UDP through (netns.js;
//   the server in the other namespace), as a corporate network would;
// - over TLS, on loopback, with a certificate made for the test (openssl);
// - over UDP with credentials valid 6 s: the call goes on through its
//   relay, the page gets new credentials (`ice_servers`), and an ICE
//   restart after the first ones expired allocates with the new ones;
// - huddle-call (relay only) from a network namespace without UDP, over TCP
//   and over TLS: webrtc-rs reaches TURN over UDP only, and the calling
//   crate carries its TURN datagrams over the stream (a doorway on
//   loopback, src/turn_doorway.rs);
// - a WHEP viewer (watch.html) on a network without UDP, the server without
//   ICE-TCP: it takes the TURN servers of the `Link` headers (RFC 9725
//   §4.4) and plays the room through TURN/TCP.
//
// Checked: both of alice's connections run through a relay candidate
// reached over that transport, audio and video flow both ways with bob
// (who takes the direct path), and the server's log shows the allocations.
//
// Needs root (or password-less sudo) for the namespaces, and openssl.
//   HUDDLE_SERVER_BIN=.../huddle-server node --test tests/browser/turn_relay.test.js
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const lib = require('./lib');

const ROOM = 'relayed';
const SECRET = 'turn-relay-test-secret-padded-to-32-bytes';

/** A self-signed certificate for `ip` in a fresh directory. */
function certificate(ip = '127.0.0.1') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'huddle-turn-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=huddle-test',
      '-addext', `subjectAltName=IP:${ip}`,
      // A server's certificate, not a CA's (openssl's default): rustls
      // (huddle-call) refuses a CA certificate as a server's own.
      '-addext', 'basicConstraints=critical,CA:FALSE',
    ], { stdio: 'pipe' });
  } catch (e) {
    throw new Error(`cannot make a certificate with openssl (apt-get install openssl): ${e.message}`);
  }
  // Chromium checks a TURN server's certificate (a self-signed one fails
  // with "certificate unknown"): this test's page trusts this key, and only
  // it, as an operator's clients trust a CA's certificate.
  const spki = execFileSync('sh', ['-c',
    `openssl x509 -in '${cert}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`,
  ], { encoding: 'utf8' }).trim();
  return { dir, cert, key, spki };
}

/**
 * Waits for audio and video both ways between `alice` (relay only) and
 * `bob`, checks that both of alice's connections go through a relay over
 * `protocol`, and that media keeps flowing for 3 s.
 */
async function relayedCall(alice, bob, protocol) {
  await lib.mediaBothWays(alice, bob);
  // Chromium may select the first relay pair that works (with both
  // turn:?transport=udp and ?transport=tcp URLs, sometimes the TCP one) and
  // moves to the preferred one when that becomes writable: wait up to 10 s
  // for both connections to settle on `protocol`.
  const settled = (p) => ['publisher', 'subscriber'].every((pc) => p[pc] && p[pc].localType === 'relay' && p[pc].relayProtocol === protocol);
  const start = Date.now();
  let paths = await alice.page.evaluate(() => window.huddle.paths());
  while (!settled(paths) && Date.now() - start < 10000) {
    await lib.sleep(250);
    paths = await alice.page.evaluate(() => window.huddle.paths());
  }
  console.log(`alice's paths over TURN/${protocol} (${Date.now() - start} ms after media flowed): ${JSON.stringify(paths)}`);
  for (const pc of ['publisher', 'subscriber']) {
    assert.ok(paths[pc], `alice's ${pc} connection has a path`);
    assert.equal(paths[pc].localType, 'relay', `alice's ${pc} connection goes through the relay`);
    assert.equal(paths[pc].relayProtocol, protocol, `alice reaches the TURN server over ${protocol}`);
  }
  await lib.mediaKeepsFlowing(alice, bob, `through TURN/${protocol}`);
}

/** The server's log shows at least one TURN allocation. */
function allocated(logName) {
  const log = fs.readFileSync(path.join(lib.ARTIFACTS, logName), 'utf8');
  return (log.match(/TURN allocation\b/g) || []).length;
}

/** One test on loopback: a server with `env`, bob direct, alice relay only. */
async function onLoopback(t, tag, env, protocol, chromiumArgs = [], then = null) {
  const serverBin = lib.requiredBinary('HUDDLE_SERVER_BIN');
  assert.ok(fs.existsSync(lib.CHROMIUM), `Chromium not found at ${lib.CHROMIUM} (apt-get install chromium)`);
  fs.mkdirSync(lib.ARTIFACTS, { recursive: true });
  const profiles = [];
  const clients = [];
  let server = null;
  t.after(async () => {
    for (const c of clients) await c.context.close().catch(() => {});
    await lib.stopProcess(server);
    for (const d of profiles) fs.rmSync(d, { recursive: true, force: true });
  });
  const logName = `huddle-server-turn-${tag}.log`;
  let baseUrl;
  ({ server, baseUrl } = await lib.startServer(serverBin, logName, { env: { ...env, RUST_LOG: process.env.RUST_LOG || 'info' } }));
  const bob = await lib.openClient(baseUrl, ROOM, 'bob', profiles, { query: 'simulcast=0' });
  clients.push(bob);
  const alice = await lib.openClient(baseUrl, ROOM, 'alice', profiles, { query: 'simulcast=0&relay=1', args: chromiumArgs });
  clients.push(alice);
  try {
    bob.id = await bob.page.evaluate(() => window.huddle.state().me);
    alice.id = await alice.page.evaluate(() => window.huddle.state().me);
    await relayedCall(alice, bob, protocol);
    assert.ok(allocated(logName) >= 2, 'the server logged the allocations');
    if (then) await then(alice, bob, logName);
  } catch (e) {
    for (const c of clients) console.error(c.logs.slice(-20).join('\n'));
    throw e;
  }
}

test('Chromium with iceTransportPolicy relay calls through the embedded TURN server over UDP', { timeout: 90_000 }, async (t) => {
  const port = await lib.freePort('udp');
  await onLoopback(t, 'udp', { HUDDLE_TURN_LISTEN: `127.0.0.1:${port}` }, 'udp');
});

test('Chromium with iceTransportPolicy relay calls through the embedded TURN server over TLS', { timeout: 90_000 }, async (t) => {
  const tls = certificate();
  t.after(() => fs.rmSync(tls.dir, { recursive: true, force: true }));
  const port = await lib.freePort('tcp');
  await onLoopback(t, 'tls', {
    HUDDLE_TURN_TLS_LISTEN: `127.0.0.1:${port}`,
    HUDDLE_TURN_TLS_CERT: tls.cert,
    HUDDLE_TURN_TLS_KEY: tls.key,
  }, 'tls', [`--ignore-certificate-errors-spki-list=${tls.spki}`]);
});

test('Chromium on a network without UDP calls through the embedded TURN server over TCP', { timeout: 120_000 }, async (t) => {
  const logName = 'huddle-server-turn-tcp.log';
  const env = await lib.linkWithServer(t, 'tt', SECRET, logName, ['--turn-listen', '198.18.0.1:3478']);
  assert.equal(env.link.serverAddr, '198.18.0.1');
  env.link.blockUdp();
  try {
    const bob = await lib.pageInNamespace(env, env.link.serverNs, ROOM, 'bob', 'simulcast=0');
    const alice = await lib.pageInNamespace(env, env.link.viewerNs, ROOM, 'alice', 'simulcast=0&relay=1');
    await relayedCall(alice, bob, 'tcp');
    assert.ok(allocated(logName) >= 2, 'the server logged the allocations');
  } catch (e) {
    console.error(env.logs.slice(-30).join('\n'));
    throw e;
  }
});

/**
 * huddle-call as alice, relay only, from the namespace without UDP, with
 * the server started with `serverArgs` (its TURN listeners on 198.18.0.1):
 * audio and video both ways with bob, through allocations the server made.
 */
async function huddleCallWithoutUdp(t, tag, protocol, serverArgs, callArgs = []) {
  const logName = `huddle-server-turn-${tag}.log`;
  const env = await lib.linkWithServer(t, tag, SECRET, logName, serverArgs);
  assert.equal(env.link.serverAddr, '198.18.0.1');
  env.link.blockUdp();
  try {
    const bob = await lib.pageInNamespace(env, env.link.serverNs, ROOM, 'bob', 'simulcast=0');
    const call = lib.huddleCallIn(env, env.link.viewerNs, ROOM, 'alice', ['--video', '--relay-only', ...callArgs], `turn-${tag}-huddle-call.log`);
    const alice = await lib.callInRoom(bob, call, 'alice');
    await lib.callMediaFlows(bob, call, alice, `through TURN/${protocol}`);
    // No UDP leaves alice's namespace and she takes relays only: every
    // allocation came over the stream.
    assert.ok(allocated(logName) >= 2, 'the server logged the allocations');
  } catch (e) {
    console.error(env.logs.slice(-30).join('\n'));
    throw e;
  }
}

test('huddle-call on a network without UDP calls through the embedded TURN server over TCP', { timeout: 120_000 }, async (t) => {
  await huddleCallWithoutUdp(t, 'ht', 'tcp', ['--turn-listen', '198.18.0.1:3478']);
});

test('huddle-call on a network without UDP calls through the embedded TURN server over TLS', { timeout: 120_000 }, async (t) => {
  const tls = certificate('198.18.0.1');
  t.after(() => fs.rmSync(tls.dir, { recursive: true, force: true }));
  await huddleCallWithoutUdp(t, 'hs', 'tls', [
    '--turn-tls-listen', '198.18.0.1:5349', '--turn-tls-cert', tls.cert, '--turn-tls-key', tls.key,
  ], ['--tls-ca', tls.cert]);
});

test('a relayed Chromium call outlives its TURN credentials', { timeout: 120_000 }, async (t) => {
  const port = await lib.freePort('udp');
  // Valid 6 s: the server sends new ones every 4.5 s. The relay in use
  // stays; an ICE restart after the first ones expired allocates with the
  // new ones (the TURN server refuses expired credentials a new allocation).
  const env = { HUDDLE_TURN_LISTEN: `127.0.0.1:${port}`, HUDDLE_TURN_CREDENTIAL_TTL: '6' };
  await onLoopback(t, 'renew', env, 'udp', [], async (alice, bob, logName) => {
    await lib.sleep(14000);
    const state = await alice.page.evaluate(() => window.huddle.state());
    console.log(`after 14 s: ${state.iceServerRenewals} renewals, ${state.iceRestarts} ICE restarts`);
    assert.ok(state.iceServerRenewals >= 2, 'new credentials came twice or more');
    assert.equal(state.iceRestarts, 0, 'the relay in use stayed');
    await relayedCall(alice, bob, 'udp');
    const before = allocated(logName);
    assert.ok(await alice.page.evaluate(() => window.huddle.restartIce()));
    await lib.waitFor('allocations with the new credentials', 15000, async () => allocated(logName) >= before + 2);
    await relayedCall(alice, bob, 'udp');
  });
});

test('a WHEP viewer on a network without UDP gets through the TURN server of its Link headers', { timeout: 120_000 }, async (t) => {
  // No ICE-TCP either: only a relay gets through.
  const logName = 'huddle-server-turn-whep.log';
  const env = await lib.linkWithServer(t, 'tw', SECRET, logName, ['--turn-listen', '198.18.0.1:3478', '--ice-tcp=false']);
  env.link.blockUdp();
  try {
    await lib.pageInNamespace(env, env.link.serverNs, ROOM, 'bob', 'simulcast=0');
    const token = execFileSync(env.serverBin, ['token', '--room', ROOM, '--identity', 'viewer', '--publish', 'false'], {
      encoding: 'utf8',
      env: { ...process.env, HUDDLE_SECRET: SECRET },
    }).trim();
    const browser = await lib.launchIn(env.link, env.link.viewerNs, 'viewer', env.origin, env.profiles, { width: 800, height: 600 });
    env.contexts.push(browser);
    const page = browser.pages()[0] || (await browser.newPage());
    page.on('console', (m) => env.logs.push(`[viewer] ${m.type()}: ${m.text()}`));
    await page.goto(`${env.origin}/watch.html?room=${ROOM}&autostart=1#token=${encodeURIComponent(token)}`);
    // Its first offer goes out before it knows of any TURN server; the
    // answer's Link headers name them, and the page gives them to its
    // connection (Chromium gathers with them at once; an ICE restart
    // would).
    await lib.waitFor('the viewer to connect through the relay', 30000, async () => (await page.evaluate(() => window.whep.state())).connection === 'connected');
    const path = await page.evaluate(() => window.whep.transportStats());
    const { restarts } = await page.evaluate(() => window.whep.state());
    console.log(`the WHEP viewer's path: ${JSON.stringify(path)}, after ${restarts} ICE restarts`);
    assert.equal(path.localType, 'relay');
    assert.equal(path.relayProtocol, 'tcp');
    const frames = async () => {
      const list = await page.evaluate(() => window.whep.inboundStats());
      const video = list.find((x) => x.kind === 'video');
      return video ? video.framesDecoded : 0;
    };
    await lib.waitFor('decoded video', 20000, async () => (await frames()) > 0);
    const before = await frames();
    await lib.sleep(3000);
    const decoded = (await frames()) - before;
    console.log(`WHEP through TURN/tcp, 3 s: ${decoded} frames decoded`);
    assert.ok(decoded >= 20, 'video keeps coming through the relay');
    assert.ok(allocated(logName) >= 1, 'the server logged the allocation');
  } catch (e) {
    console.error(env.logs.slice(-30).join('\n'));
    throw e;
  }
});
