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
const lib = require('./lib');

const ROOM = 'moving';
const SECRET = 'address-change-secret-padded-to-32-bytes';
/** Where alice moves to (same /24 as before, another address). */
const NEW_ADDR = '198.18.0.6';

/** A Chromium page in namespace `ns` joined as `name` (microphone only). */
function pageIn(env, ns, name) {
  return lib.pageInNamespace(env, ns, ROOM, name, 'camera=0');
}

/** Audio packets `client` (a page) has received from participant `from`. */
async function audioFrom(client, from) {
  return (await lib.receivedFrom(client, from)).audio;
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
 * `more` packets past the count where it stopped), checking all along that
 * he never loses her. Returns the milliseconds from the move to the first
 * sample (every 25 ms) that showed a packet of hers past that count.
 */
async function moveAndListen(env, alice, bob, more = 10) {
  env.link.renumberViewer(NEW_ADDR);
  const movedAt = Date.now();
  // Packets already on their way when her address went still land; on
  // this link they have all landed well within 100 ms.
  await lib.sleep(100);
  const stopped = await audioFrom(bob, alice.id);
  let backAt = null;
  await lib.waitFor(`${bob.name} to hear ${alice.name} again after her address changed`, 15000, async () => {
    await stillThere(bob, alice);
    const heard = await audioFrom(bob, alice.id);
    if (heard > stopped && backAt === null) backAt = Date.now();
    return heard > stopped + more;
  }, 25);
  return backAt - movedAt;
}

/** The test's namespaces, server and browsers, torn down at the end. */
function setUp(t, tag) {
  return lib.linkWithServer(t, tag, SECRET, `address-change-${tag}-server.log`);
}

test('a Rust participant whose address changes keeps its call', { timeout: 120_000 }, async (t) => {
  const env = await setUp(t, 'ar');
  try {
    const bob = await pageIn(env, env.link.serverNs, 'bob');
    const call = lib.huddleCallIn(env, env.link.viewerNs, ROOM, 'alice', [], 'address-change-huddle-call.log');
    const { child, logFile } = call;
    const received = () => (call.stats() ? call.stats().audio.received : 0);
    const alice = await lib.callInRoom(bob, call, 'alice');
    await lib.waitFor('audio both ways', 20000, async () => (await audioFrom(bob, alice.id)) > 50 && received() > 50);

    const ms = await moveAndListen(env, alice, bob);
    const atBack = received();
    await lib.waitFor('alice to hear bob again', 15000, async () => {
      if (child.exitCode !== null) throw new Error(`huddle-call exited (${child.exitCode}): see ${logFile}`);
      await stillThere(bob, alice);
      return received() > atBack + 25;
    });
    const out = call.out();
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
