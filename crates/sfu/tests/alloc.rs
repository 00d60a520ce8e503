//! The forwarding path allocates nothing per forwarded copy: a packet that
//! goes to nine subscribers costs no more allocations than one that goes to
//! one. Counted with a global allocator, on this thread only, around
//! `Endpoint::handle_datagram` and the drain of its datagrams (which are
//! dropped at once, as the driver drops them once sent). For plain Opus,
//! and for RED: as it is to subscribers that took it, stripped to plain
//! Opus (lost packets recovered from the redundancy) to those that did
//! not.

mod harness;

use harness::{Client, ClientId, Net, Role};
use huddle_proto::TrackKind;
use huddle_wire::codecs::OPUS_PT;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to `System` unchanged; the counters are
// const-initialised thread locals (no allocation, no reentrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count() {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A typical Opus frame.
const PAYLOAD: [u8; 80] = [0x55; 80];

/// What the publisher sends and what the subscribers take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Plain Opus.
    Opus,
    /// RED (distance 1) to subscribers that took RED.
    RedAsIs,
    /// RED (distance 1) to subscribers without RED; every tenth packet
    /// is lost on the way in and recovered from the next.
    RedStripped,
}

/// The publisher's next audio datagram in `mode`.
fn capture(net: &mut Net, publisher: ClientId, mode: Mode) -> Vec<u8> {
    match mode {
        Mode::Opus => net.capture_rtp(publisher, TrackKind::Audio, &PAYLOAD),
        Mode::RedAsIs | Mode::RedStripped => {
            let previous = [0x54; 80];
            let payload = harness::red_payload(&[(OPUS_PT, 960, &previous)], OPUS_PT, &PAYLOAD);
            net.capture_red(publisher, &payload)
        }
    }
}

/// Allocations made while `packets` audio datagrams from one publisher are
/// forwarded to `k` subscribers (after a warm-up), and the copies queued.
fn allocations(k: usize, packets: usize, mode: Mode) -> (u64, u64) {
    let mut net = Net::new();
    net.red_clients = mode != Mode::Opus;
    let publisher = net.join("pub", true, false);
    net.red_clients = mode == Mode::RedAsIs;
    let subs: Vec<_> = (0..k)
        .map(|i| net.join(&format!("sub{i}"), false, false))
        .collect();
    net.connect();
    net.start_media(publisher, TrackKind::Audio, &subs);
    net.connect();
    let src = Client::addr(publisher, Role::Publisher);
    let input: Vec<Vec<u8>> = (0..packets + 50)
        .map(|_| capture(&mut net, publisher, mode))
        .collect();
    let now = net.now;
    let (warmup, measured) = input.split_at(50);
    let mut feed = |datagrams: &[Vec<u8>]| {
        let mut copies = 0;
        for (i, d) in datagrams.iter().enumerate() {
            if mode == Mode::RedStripped && i % 10 == 5 {
                continue; // lost on the publisher's link
            }
            net.endpoint.handle_datagram(now, src, d);
            while let Some(t) = net.endpoint.poll_transmit() {
                copies += 1;
                drop(t);
            }
        }
        copies
    };
    feed(warmup);
    ALLOCS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    let copies = feed(measured);
    COUNTING.with(|on| on.set(false));
    if mode == Mode::RedStripped {
        let recovered = net.endpoint.stats().red_recovered;
        assert_eq!(
            recovered,
            (packets as u64 + 50) / 10,
            "every lost packet recovered"
        );
    }
    (ALLOCS.with(Cell::get), copies)
}

fn one_more_subscriber_costs_no_allocation(mode: Mode) {
    const PACKETS: usize = 200;
    let (one, copies_one) = allocations(1, PACKETS, mode);
    let (nine, copies_nine) = allocations(9, PACKETS, mode);
    // Stripped, the lost packets go out too (recovered).
    assert_eq!(copies_one, PACKETS as u64, "every packet forwarded once");
    assert_eq!(
        copies_nine,
        9 * PACKETS as u64,
        "every packet forwarded nine times"
    );
    // The publisher's side (rtc's SRTP and interceptors) allocates per input
    // packet; the 1 600 extra copies must not add any.
    let extra = nine.saturating_sub(one);
    println!("{mode:?}: {one} allocations for one subscriber, {nine} for nine");
    assert!(
        extra * 100 < 8 * PACKETS as u64,
        "{mode:?}: {extra} allocations for 1 600 extra copies ({one} for one subscriber, {nine} for nine)"
    );
}

#[test]
fn one_more_subscriber_costs_no_allocation_for_opus() {
    one_more_subscriber_costs_no_allocation(Mode::Opus);
}

#[test]
fn one_more_subscriber_costs_no_allocation_for_red_as_it_is() {
    one_more_subscriber_costs_no_allocation(Mode::RedAsIs);
}

#[test]
fn one_more_subscriber_costs_no_allocation_for_red_stripped_and_recovered() {
    one_more_subscriber_costs_no_allocation(Mode::RedStripped);
}
