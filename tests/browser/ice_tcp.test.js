// ICE over TCP (RFC 6544): a participant whose network lets no UDP through
// still joins the call, through the server's passive TCP candidate. Two
// network namespaces joined by a veth pair (netns.js): the server and bob
// on one side, alice on the other with every UDP datagram in and out of her
// namespace dropped (nftables). Checked: alice sends and receives audio and
// video with bob, and both of her media connections run over TCP.
//
// First test: alice is the web client in Chromium. Second: alice is
// huddle-call (the calling crate) with a synthetic video. bob is the web
// client in Chromium both times.
//
// Needs root (or password-less sudo) for `ip netns`, iproute2, nftables.
//   HUDDLE_SERVER_BIN=.../huddle-server HUDDLE_CALL_BIN=.../huddle-call \
//     node --test tests/browser/ice_tcp.test.js
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const lib = require('./lib');

const ROOM = 'tcp-only';
const SECRET = 'ice-tcp-test-secret-padded-to-32-bytes!!';

/** A Chromium page in namespace `ns` joined as `name`, camera on. */
function pageIn(env, ns, name) {
  // One encoding: a TCP path is no place for three simulcast layers.
  return lib.pageInNamespace(env, ns, ROOM, name, 'simulcast=0');
}

const { receivedFrom } = lib;

/** The test's namespaces and server; alice's side lets no UDP through. */
async function setUp(t, tag) {
  const env = await lib.linkWithServer(t, tag, SECRET, `ice-tcp-${tag}-server.log`);
  env.link.blockUdp();
  return env;
}

test('a Chromium page on a network without UDP calls over ICE-TCP', { timeout: 120_000 }, async (t) => {
  const env = await setUp(t, 'tc');
  try {
    const bob = await pageIn(env, env.link.serverNs, 'bob');
    const alice = await pageIn(env, env.link.viewerNs, 'alice');
    await lib.mediaBothWays(alice, bob);
    const paths = await alice.page.evaluate(() => window.huddle.paths());
    console.log(`alice's paths: ${JSON.stringify(paths)}`);
    for (const pc of ['publisher', 'subscriber']) {
      assert.ok(paths[pc], `alice's ${pc} connection has a path`);
      assert.equal(paths[pc].protocol, 'tcp', `alice's ${pc} connection runs over TCP`);
      assert.equal(paths[pc].remoteProtocol, 'tcp');
      assert.equal(paths[pc].remote.split(':')[0], env.link.serverAddr, 'straight to the server');
    }
    await lib.mediaKeepsFlowing(alice, bob, 'over ICE-TCP');
  } catch (e) {
    console.error(env.logs.slice(-30).join('\n'));
    throw e;
  }
});

test('huddle-call on a network without UDP calls over ICE-TCP', { timeout: 120_000 }, async (t) => {
  const env = await setUp(t, 'tr');
  try {
    const bob = await pageIn(env, env.link.serverNs, 'bob');
    const call = lib.huddleCallIn(env, env.link.viewerNs, ROOM, 'alice', ['--video'], 'ice-tcp-huddle-call.log');
    const alice = await lib.callInRoom(bob, call, 'alice');
    await lib.callMediaFlows(bob, call, alice, 'over ICE-TCP');
  } catch (e) {
    console.error(env.logs.slice(-30).join('\n'));
    throw e;
  }
});
