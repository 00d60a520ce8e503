// A participant's address changes mid-call (a Wi-Fi/LTE handover, a new
// lease): two network namespaces joined by a veth pair (netns.js), the
// server and bob on one side, alice on the other. The test replaces
// alice's address (the old one goes, a new one comes); her client notices,
// restarts ICE on both media connections and resumes its signaling on a
// new WebSocket. Checked: media flows both ways again, alice keeps her
// participant id, bob never sees her leave or join. Printed: how long
// until bob hears her again (for docs/interop.md; not asserted, tests do
// not judge wall-clock time).
//
// First test: alice is huddle-call (the calling crate). Second: alice is
// the web client in Chromium. bob is the web client in Chromium both times.
//
// Needs root (or password-less sudo) for `ip netns`, iproute2, nftables.
//   HUDDLE_SERVER_BIN=.../huddle-server HUDDLE_CALL_BIN=.../huddle-call \
//     node --test tests/browser/address_change.test.js
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('./lib');
const { ConstrainedLink, requireNetworkTools } = require('./netns');

const ROOM = 'moving';
const HTTP_PORT = 7880;
const MEDIA_PORT = 7882;
const SECRET = 'address-change-secret-padded-to-32-bytes';
/** Where alice moves to (same /24 as before, another address). */
const NEW_ADDR = '198.18.0.6';

/** The server in the link's server namespace, and the page origin. */
async function serverIn(link, serverBin, logName) {
  const origin = `http://${link.serverAddr}:${HTTP_PORT}`;
  const [cmd, args] = link.server(serverBin, [
    'serve', '--dev',
    '--http', `${link.serverAddr}:${HTTP_PORT}`,
    '--media-udp', `${link.serverAddr}:${MEDIA_PORT}`,
  ]);
  const server = lib.startProcess(cmd, args, path.join(lib.ARTIFACTS, logName), {
    HUDDLE_SECRET: SECRET,
    RUST_LOG: process.env.RUST_LOG || 'info',
  });
  await lib.waitFor('the server in its namespace to answer /healthz', 20000, async () => {
    if (server.exitCode !== null) throw new Error(`huddle-server exited (${server.exitCode}): see artifacts/${logName}`);
    return lib.getInNamespace(link, `${origin}/healthz`);
  });
  return { server, origin };
}

/** A Chromium page in namespace `ns` joined as `name` (microphone only). */
async function pageIn(env, ns, name) {
  const browser = await lib.launchIn(env.link, ns, name, env.origin, env.profiles, { width: 960, height: 540 });
  env.contexts.push(browser);
  const page = browser.pages()[0] || (await browser.newPage());
  await lib.joinPage(page, `${env.origin}/?camera=0`, ROOM, name, env.logs);
  const id = await page.evaluate(() => window.huddle.state().me);
  return { name, page, id };
}

/** Audio packets `client` (a page) has received from participant `from`. */
async function audioFrom(client, from) {
  const stats = await client.page.evaluate(() => window.huddle.inboundStats());
  const s = stats.find((x) => x.kind === 'audio' && x.participantId === from);
  return s ? s.packetsReceived : 0;
}

/** Fails when `watcher` (a page) no longer sees `who` as the same participant. */
async function stillThere(watcher, who) {
  const st = await watcher.page.evaluate(() => window.huddle.state());
  assert.ok(st.joined, `${watcher.name} left the call`);
  const ids = st.participants.map((p) => p.id);
  assert.ok(ids.includes(who.id), `${watcher.name} lost ${who.name} (${who.id}); sees ${ids.join(', ')}`);
  assert.equal(ids.length, 2, `${watcher.name} sees ${ids.length} participants`);
}

/**
 * Move alice to NEW_ADDR, then wait until bob hears her again (more than
 * `more` packets past what he had), checking all along that he never loses
 * her. Returns the milliseconds from the move to that.
 */
async function moveAndListen(env, alice, bob, more = 10) {
  const heard = await audioFrom(bob, alice.id);
  env.link.renumberViewer(NEW_ADDR);
  const movedAt = Date.now();
  await lib.waitFor(`${bob.name} to hear ${alice.name} again after her address changed`, 15000, async () => {
    await stillThere(bob, alice);
    return (await audioFrom(bob, alice.id)) > heard + more;
  }, 25);
  return Date.now() - movedAt;
}

/** The test's namespaces, server and browsers, torn down at the end. */
async function setUp(t, tag) {
  requireNetworkTools();
  const serverBin = lib.requiredBinary('HUDDLE_SERVER_BIN');
  assert.ok(fs.existsSync(lib.CHROMIUM), `Chromium not found at ${lib.CHROMIUM} (apt-get install chromium)`);
  fs.mkdirSync(lib.ARTIFACTS, { recursive: true });
  const link = new ConstrainedLink(tag);
  const env = { link, serverBin, profiles: [], contexts: [], logs: [], children: [], server: null };
  t.after(async () => {
    for (const c of env.contexts) await c.close().catch(() => {});
    for (const child of env.children) await lib.stopProcess(child);
    await lib.stopProcess(env.server);
    link.destroy();
    for (const d of env.profiles) fs.rmSync(d, { recursive: true, force: true });
    assert.deepEqual(ConstrainedLink.leftovers(), [], 'the test namespaces are gone');
  });
  const { server, origin } = await serverIn(link, serverBin, `address-change-${tag}-server.log`);
  env.server = server;
  env.origin = origin;
  return env;
}

test('a Rust participant whose address changes keeps its call', { timeout: 120_000 }, async (t) => {
  const env = await setUp(t, 'ar');
  const callBin = lib.requiredBinary('HUDDLE_CALL_BIN');
  try {
    const bob = await pageIn(env, env.link.serverNs, 'bob');
    const token = execFileSync(env.serverBin, ['token', '--room', ROOM, '--identity', 'alice'], {
      encoding: 'utf8',
      env: { ...process.env, HUDDLE_SECRET: SECRET },
    }).trim();
    const [cmd, args] = env.link.viewer(callBin, ['--url', env.origin, '--stats']);
    const logFile = path.join(lib.ARTIFACTS, 'address-change-huddle-call.log');
    const log = fs.createWriteStream(logFile);
    const child = spawn(cmd, args, { env: { ...process.env, HUDDLE_TOKEN: token, RUST_LOG: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.exited = new Promise((resolve) => child.once('exit', resolve));
    env.children.push(child);
    let out = '';
    let received = 0;
    child.stdout.on('data', (chunk) => {
      log.write(chunk);
      out += chunk;
      for (const line of String(chunk).split('\n')) {
        if (line.startsWith('stats ')) received = JSON.parse(line.slice(6)).audio.received;
      }
    });
    child.stderr.on('data', (chunk) => log.write(chunk));
    let alice = null;
    await lib.waitFor('alice (huddle-call) in the room', 20000, async () => {
      if (child.exitCode !== null) throw new Error(`huddle-call exited (${child.exitCode}): see ${logFile}`);
      const st = await bob.page.evaluate(() => window.huddle.state());
      const p = st.participants.find((x) => x.identity === 'alice');
      if (p) alice = { name: 'alice', id: p.id };
      return alice;
    });
    await lib.waitFor('audio both ways', 20000, async () => (await audioFrom(bob, alice.id)) > 50 && received > 50);

    const ms = await moveAndListen(env, alice, bob);
    const atBack = received;
    await lib.waitFor('alice to hear bob again', 15000, async () => {
      if (child.exitCode !== null) throw new Error(`huddle-call exited (${child.exitCode}): see ${logFile}`);
      await stillThere(bob, alice);
      return received > atBack + 25;
    });
    assert.match(out, /media path lost: restarting ICE/, 'huddle-call says it restarted ICE');
    assert.doesNotMatch(out, /joined again/, 'alice kept her session (no rejoin)');
    assert.doesNotMatch(out, /bob (left|joined)/, 'alice never saw bob leave or join again');
    console.log(`huddle-call: bob hears alice again ${ms} ms after her address changed`);
  } catch (e) {
    console.error(env.logs.slice(-30).join('\n'));
    throw e;
  }
});

test('a Chromium page whose address changes keeps its call', { timeout: 120_000 }, async (t) => {
  const env = await setUp(t, 'ac');
  try {
    const bob = await pageIn(env, env.link.serverNs, 'bob');
    const alice = await pageIn(env, env.link.viewerNs, 'alice');
    await lib.waitFor('audio both ways', 20000, async () => (await audioFrom(bob, alice.id)) > 50 && (await audioFrom(alice, bob.id)) > 50);

    const ms = await moveAndListen(env, alice, bob);
    const heard = await audioFrom(alice, bob.id);
    await lib.waitFor('alice to hear bob again', 15000, async () => {
      await stillThere(bob, alice);
      await stillThere(alice, bob);
      return (await audioFrom(alice, bob.id)) > heard + 25;
    }, 25);
    const st = await alice.page.evaluate(() => window.huddle.state());
    assert.equal(st.me, alice.id, 'alice kept her participant id');
    assert.equal(st.rejoins, 0, 'alice did not join again');
    console.log(`Chromium: bob hears alice again ${ms} ms after her address changed (ICE restarts: ${st.iceRestarts}, sessions resumed: ${st.resumes})`);
  } catch (e) {
    console.error(env.logs.slice(-40).join('\n'));
    throw e;
  }
});
