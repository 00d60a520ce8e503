// A constrained link for tests: two network namespaces joined by a veth
// pair, with addresses from the benchmarking range 198.18.0.0/15 that exist
// only inside them (DESIGN.md, "Tests, in tiers"). The "server" side holds
// the SFU and the publishers (they reach it over the namespace's own
// loopback routing, unshaped); the "viewer" side reaches the server over the
// veth, and what the server sends it is shaped with a `tc tbf` qdisc on the
// server end (the viewer's downlink) and, for loss, dropped at random by an
// nftables `numgen` rule. Needs root (or password-less sudo), iproute2 and
// nftables; a missing tool fails the test loudly. Not a test file itself.
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const SERVER_ADDR = '198.18.0.1';
const VIEWER_ADDR = '198.18.0.2';
/** Room for a viewer that moves to another address of the same link. */
const PREFIX = 24;

/** `ip`, `tc` and `nft` as root: directly, or through sudo. */
function privileged(cmd, args) {
  const asRoot = process.getuid && process.getuid() === 0;
  const [bin, argv] = asRoot ? [cmd, args] : ['sudo', ['--non-interactive', cmd, ...args]];
  try {
    return execFileSync(bin, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const why = e.code === 'ENOENT' ? `${bin} is not installed` : (e.stderr || e.message).trim();
    throw new Error(`${cmd} ${args.join(' ')}: ${why}`);
  }
}

/** The command line that runs `bin args` inside namespace `ns`. */
function inNamespace(ns, bin, args = []) {
  const asRoot = process.getuid && process.getuid() === 0;
  const argv = ['netns', 'exec', ns, bin, ...args];
  return asRoot ? ['ip', argv] : ['sudo', ['--non-interactive', '--preserve-env', 'ip', ...argv]];
}

class ConstrainedLink {
  /**
   * Create the namespaces and the veth pair. `tag` keeps concurrent tests
   * apart (namespace and interface names are per process).
   */
  constructor(tag) {
    const id = `${tag}${process.pid % 100000}`;
    this.serverNs = `hs-${id}`;
    this.viewerNs = `hv-${id}`;
    // Interface names: at most 15 bytes.
    this.serverIf = `hs${id}`.slice(0, 15);
    this.viewerIf = `hv${id}`.slice(0, 15);
    this.serverAddr = SERVER_ADDR;
    this.viewerAddr = VIEWER_ADDR;
    this.wrappers = [];
    this.shaped = false;
    this.lossy = false;
    try {
      privileged('ip', ['netns', 'add', this.serverNs]);
      privileged('ip', ['netns', 'add', this.viewerNs]);
      privileged('ip', ['link', 'add', this.serverIf, 'netns', this.serverNs, 'type', 'veth', 'peer', 'name', this.viewerIf, 'netns', this.viewerNs]);
      for (const [ns, ifname, addr] of [
        [this.serverNs, this.serverIf, SERVER_ADDR],
        [this.viewerNs, this.viewerIf, VIEWER_ADDR],
      ]) {
        privileged('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
        privileged('ip', ['-n', ns, 'addr', 'add', `${addr}/${PREFIX}`, 'dev', ifname]);
        privileged('ip', ['-n', ns, 'link', 'set', ifname, 'up']);
      }
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  /**
   * Cap what the server sends the viewer at `kbps` kbit/s: a token bucket
   * with a burst of 5 ms at that rate (at least one full-size packet) and
   * up to `queueMs` of queue, beyond which packets are dropped (a home
   * router's buffer). Calling it again changes the cap in place.
   */
  cap(kbps, queueMs = 200) {
    const burst = Math.max(1600, Math.round((kbps * 1000 * 0.005) / 8));
    const verb = this.shaped ? 'change' : 'add';
    privileged('tc', ['-n', this.serverNs, 'qdisc', verb, 'dev', this.serverIf, 'root', 'tbf', 'rate', `${kbps}kbit`, 'burst', String(burst), 'latency', `${queueMs}ms`]);
    this.shaped = true;
  }

  /** Drop `percent` % of the UDP the server sends the viewer, at random (0: none). */
  loss(percent) {
    if (this.lossy) {
      privileged('ip', ['netns', 'exec', this.serverNs, 'nft', 'delete', 'table', 'inet', 'huddle_loss']);
      this.lossy = false;
    }
    if (percent <= 0) return;
    const script = [
      'table inet huddle_loss {',
      '  chain out {',
      '    type filter hook postrouting priority 0; policy accept;',
      `    oifname "${this.serverIf}" meta l4proto udp numgen random mod 100 < ${percent} drop`,
      '  }',
      '}',
    ].join('\n');
    const file = path.join(os.tmpdir(), `huddle-loss-${process.pid}.nft`);
    fs.writeFileSync(file, script);
    try {
      privileged('ip', ['netns', 'exec', this.serverNs, 'nft', '-f', file]);
    } finally {
      fs.rmSync(file, { force: true });
    }
    this.lossy = true;
  }

  /**
   * Block all UDP in and out of the viewer's namespace (a network that lets
   * only TCP through, as many corporate ones do). Loopback stays open, as
   * a firewall filters the network and not the machine's own traffic.
   * `unblockUdp` lifts it.
   */
  blockUdp() {
    const script = [
      'table inet huddle_block {',
      '  chain in {',
      '    type filter hook input priority 0; policy accept;',
      '    iifname "lo" accept',
      '    meta l4proto udp drop',
      '  }',
      '  chain out {',
      '    type filter hook output priority 0; policy accept;',
      '    oifname "lo" accept',
      '    meta l4proto udp drop',
      '  }',
      '}',
    ].join('\n');
    const file = path.join(os.tmpdir(), `huddle-block-${process.pid}.nft`);
    fs.writeFileSync(file, script);
    try {
      privileged('ip', ['netns', 'exec', this.viewerNs, 'nft', '-f', file]);
    } finally {
      fs.rmSync(file, { force: true });
    }
  }

  /** Lift [`blockUdp`]. */
  unblockUdp() {
    privileged('ip', ['netns', 'exec', this.viewerNs, 'nft', 'delete', 'table', 'inet', 'huddle_block']);
  }

  /**
   * The viewer's address changes to `addr` (198.18.0.x), as on a network
   * handover: the old address goes (with it the route, and every socket
   * bound to it is stranded), then the new one comes.
   */
  renumberViewer(addr) {
    privileged('ip', ['-n', this.viewerNs, 'addr', 'del', `${this.viewerAddr}/${PREFIX}`, 'dev', this.viewerIf]);
    privileged('ip', ['-n', this.viewerNs, 'addr', 'add', `${addr}/${PREFIX}`, 'dev', this.viewerIf]);
    this.viewerAddr = addr;
  }

  /** [bin, args] running `bin args` in the server's namespace. */
  server(bin, args = []) {
    return inNamespace(this.serverNs, bin, args);
  }

  /** [bin, args] running `bin args` in the viewer's namespace. */
  viewer(bin, args = []) {
    return inNamespace(this.viewerNs, bin, args);
  }

  /**
   * An executable script that runs `bin` with its arguments inside `ns`:
   * for launchers that take a path (Playwright's executablePath).
   */
  wrapper(ns, bin) {
    const [cmd, args] = inNamespace(ns, bin);
    const file = path.join(os.tmpdir(), `huddle-${ns}-${path.basename(bin)}.sh`);
    const quoted = [cmd, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
    fs.writeFileSync(file, `#!/bin/sh\nexec ${quoted} "$@"\n`, { mode: 0o755 });
    this.wrappers.push(file);
    return file;
  }

  /** Remove the namespaces (and with them the veth pair, qdisc and rules). */
  destroy() {
    for (const ns of [this.serverNs, this.viewerNs]) {
      try {
        privileged('ip', ['netns', 'delete', ns]);
      } catch {
        // Not created, or already gone.
      }
    }
    for (const f of this.wrappers) fs.rmSync(f, { force: true });
    this.wrappers = [];
  }

  /** Namespaces of this process that are still there (for the cleanup check). */
  static leftovers() {
    const list = privileged('ip', ['netns', 'list']);
    const id = `${process.pid % 100000}`;
    return list.split('\n').filter((l) => l.includes(id) && /^h[sv]-/.test(l));
  }
}

/** Fail loudly when the tools are missing, before anything starts. */
function requireNetworkTools() {
  for (const [cmd, args] of [['ip', ['-V']], ['tc', ['-V']], ['nft', ['--version']]]) {
    privileged(cmd, args);
  }
}

module.exports = { ConstrainedLink, requireNetworkTools, SERVER_ADDR, VIEWER_ADDR };
