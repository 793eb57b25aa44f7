//! Tests of the simulator's own mechanics: network delays and faults,
//! partitions, crashes and restarts, Byzantine tampering, noise, the client
//! workload and its history, timers, and determinism.
//!
//! They run a tiny protocol defined at the bottom of this file, so that a
//! failure here points at the simulator and not at a protocol:
//!
//! - a [`Pinger`] sends numbered `Ping`s (to one node, or to every replica) in
//!   bursts on a timer, and counts the `Pong`s it gets back;
//! - an [`Echo`] answers each `Ping` with a `Pong` of the same number, and each
//!   `Request` with a `Reply` carrying the operation back as the result;
//! - an [`EchoClient`] is a closed-loop [`Client`] that sends each operation to
//!   an `Echo` as a `Request` and retransmits it until the `Reply` arrives;
//! - a [`TimerProbe`] sets, re-arms and cancels timers on a script.
//!
//! Every handler call is written to a [`Journal`] shared (through an
//! `Rc<RefCell<..>>`, the simulator being single-threaded) with the test,
//! which judges the run from it: who sent and received what, and when.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use runtime::check::Operation;
use runtime::node::{ClientNode, Node, Packet, Process};
use runtime::sim::{Byzantine, Network, NodeRef, Noise, Simulator, Tamper, Workload};
use runtime::{
    Addr, Client, ClientId, Context, Counters, Dest, DropReason, ReplicaId, Rng, SharedState,
    Source, State, Time,
};
use wire::sim::FaultCounts;

const R0: Addr = Addr::Replica(ReplicaId(0));
const R1: Addr = Addr::Replica(ReplicaId(1));
const R2: Addr = Addr::Replica(ReplicaId(2));
const R3: Addr = Addr::Replica(ReplicaId(3));
const C1: Addr = Addr::Client(ClientId(1));
const C2: Addr = Addr::Client(ClientId(2));
/// A non-replica address for processes that are not clients of the workload
/// (noise), so that they stay out of `Dest::Replicas`.
const OUTSIDER: Addr = Addr::Client(ClientId(99));

// ---------------------------------------------------------------------------
// Network: delays, loss, duplication, reordering.
// ---------------------------------------------------------------------------

#[test]
fn reliable_network_delivers_each_datagram_once_within_delay_bounds() {
    let network = Network {
        delay_min: Duration::from_millis(1),
        delay_max: Duration::from_millis(3),
        ..Network::reliable()
    };
    let mut sim = Simulator::new(1, network.clone());
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 3, 90), &journal);

    // Step by hand to see the clock after every event.
    let mut last = sim.now();
    while sim.step() {
        assert!(
            sim.now() >= last,
            "time went back from {last} to {}",
            sim.now()
        );
        last = sim.now();
    }
    let entries = journal.entries();
    assert!(
        entries.windows(2).all(|w| w[0].at <= w[1].at),
        "handlers saw time go backwards"
    );

    // Ping: pinger's send → echo's receipt. Pong: echo's send → pinger's receipt.
    let ping_sent = send_times(&journal.sent(R0));
    let pong_sent = send_times(&journal.sent(R1));
    let mut delays = Vec::new();
    for (receiver, sent) in [(R1, &ping_sent), (R0, &pong_sent)] {
        let received = journal.received(receiver);
        assert_eq!(received.len(), 90, "{receiver} got each datagram once");
        let mut seqs: Vec<u64> = received.iter().map(|(_, _, msg)| seq_of(msg)).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=90).collect::<Vec<_>>());
        for (at, _, msg) in &received {
            delays.push(*at - sent[&seq_of(msg)]);
        }
    }
    for delay in &delays {
        assert!(
            (network.delay_min..=network.delay_max).contains(delay),
            "delay {delay:?} outside [{:?}, {:?}]",
            network.delay_min,
            network.delay_max
        );
    }
    // The delays spread over the range rather than sitting at one value.
    assert!(delays.iter().any(|d| *d < Duration::from_micros(1_500)));
    assert!(delays.iter().any(|d| *d > Duration::from_micros(2_500)));
    assert_eq!(sim.deliveries(), 180);
    assert_eq!(sim.faults(), FaultCounts::default());
}

#[test]
fn drop_rate_one_delivers_nothing_and_counts_every_drop() {
    let network = Network {
        drop_rate: 1.0,
        ..Network::reliable()
    };
    let mut sim = Simulator::new(2, network);
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 20), &journal);
    sim.run_until(at_ms(100));

    // The pinger's timers are not the network's business: all 20 went out.
    assert_eq!(journal.sent(R0).len(), 20);
    assert!(journal.received(R1).is_empty());
    assert!(journal.received(R0).is_empty());
    assert_eq!(sim.deliveries(), 0);
    assert_eq!(sim.faults().dropped, 20);
}

#[test]
fn duplicate_rate_one_delivers_every_datagram_twice() {
    let network = Network {
        duplicate_rate: 1.0,
        ..Network::reliable()
    };
    let mut sim = Simulator::new(3, network);
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 10), &journal);
    sim.run_until(at_ms(100));

    // Each ping arrives twice; each copy is answered, and each answer arrives
    // twice: four pongs per ping.
    let pings_received = seq_counts(&journal.received(R1));
    let pongs_received = seq_counts(&journal.received(R0));
    for seq in 1..=10 {
        assert_eq!(pings_received.get(&seq), Some(&2), "ping {seq}");
        assert_eq!(pongs_received.get(&seq), Some(&4), "pong {seq}");
    }
    // 10 pings and 20 pongs were put on the network, each duplicated.
    assert_eq!(sim.faults().duplicated, 30);
    assert_eq!(sim.deliveries(), 60);
}

#[test]
fn reorder_lets_later_datagrams_overtake_earlier_ones() {
    // With a fixed delay and no reordering, datagrams arrive in sending order:
    // the control that makes the second half of this test mean something.
    let fixed = Network {
        delay_min: Duration::from_micros(100),
        delay_max: Duration::from_micros(100),
        ..Network::reliable()
    };
    let arrivals = |network: Network| {
        let mut sim = Simulator::new(4, network);
        let journal = Journal::default();
        add_echo(&mut sim, R1, 0, &journal);
        let burst = Pings {
            interval: Duration::from_micros(50),
            ..pings(Dest::To(R1), 1, 100)
        };
        add_pinger(&mut sim, R0, burst, &journal);
        sim.run_until(at_ms(100));
        let sent = send_times(&journal.sent(R0));
        let received = journal.received(R1);
        let delays: Vec<Duration> = received
            .iter()
            .map(|(at, _, msg)| *at - sent[&seq_of(msg)])
            .collect();
        let order: Vec<u64> = received.iter().map(|(_, _, msg)| seq_of(msg)).collect();
        (order, delays, sim.faults())
    };

    let (order, _, faults) = arrivals(fixed.clone());
    assert_eq!(order, (1..=100).collect::<Vec<_>>());
    assert_eq!(faults.reordered, 0);

    let reordering = Network {
        reorder_rate: 0.3,
        reorder_delay_max: Duration::from_millis(1),
        ..fixed
    };
    let (order, delays, faults) = arrivals(reordering);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=100).collect::<Vec<_>>(),
        "nothing lost or doubled"
    );
    assert!(
        order.windows(2).any(|w| w[0] > w[1]),
        "no later ping overtook an earlier one: {order:?}"
    );
    assert!(faults.reordered > 0);
    let bound = Duration::from_micros(100)..=Duration::from_micros(1_100);
    assert!(delays.iter().all(|d| bound.contains(d)), "{delays:?}");
}

// ---------------------------------------------------------------------------
// Partitions.
// ---------------------------------------------------------------------------

#[test]
fn partition_blocks_traffic_between_groups_only_and_heal_restores_it() {
    let mut sim = Simulator::new(5, Network::reliable());
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_echo(&mut sim, R2, 0, &journal);
    // R0 pings every other replica (R1, R2, R3); R3 pings R2 only.
    add_pinger(&mut sim, R0, pings(Dest::Replicas, 1, 30), &journal);
    add_pinger(&mut sim, R3, pings(Dest::To(R2), 1, 30), &journal);
    let (cut, heal) = (at_us(9_500), at_us(19_500));
    sim.schedule(cut, |sim| sim.partition(&[&[R0, R1], &[R2, R3]]));
    sim.schedule(heal, Simulator::heal);
    sim.run_until(at_ms(100));

    let sent_by_r0 = send_times(&journal.sent(R0));
    let during = |seq: u64| (cut..heal).contains(&sent_by_r0[&seq]);
    let seqs_from = |receiver: Addr, sender: Addr| -> Vec<u64> {
        let mut seqs: Vec<u64> = journal
            .received(receiver)
            .iter()
            .filter(|(_, from, msg)| *from == sender && matches!(msg, Msg::Ping { .. }))
            .map(|(_, _, msg)| seq_of(msg))
            .collect();
        seqs.sort_unstable();
        seqs
    };
    let all: Vec<u64> = (1..=30).collect();
    let outside: Vec<u64> = all.iter().copied().filter(|&s| !during(s)).collect();
    assert_eq!(outside.len(), 20, "ten pings fall inside the partition");

    // Within a group: untouched.
    assert_eq!(seqs_from(R1, R0), all);
    assert_eq!(seqs_from(R2, R3), all);
    // Across groups: lost while partitioned, for good; delivered before and
    // after.
    assert_eq!(seqs_from(R2, R0), outside);
    assert_eq!(seqs_from(R3, R0), outside);
    // R2's pongs to R0 crossed the cut too.
    let pongs_from_r2 = journal
        .received(R0)
        .iter()
        .filter(|(_, from, _)| *from == R2)
        .count();
    assert_eq!(pongs_from_r2, 20);
    assert_eq!(sim.faults().partitions, 1);
}

#[test]
fn partition_puts_unnamed_nodes_in_a_group_of_their_own() {
    let mut sim = Simulator::new(6, Network::reliable());
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 10), &journal);
    add_pinger(&mut sim, R2, pings(Dest::To(R1), 1, 10), &journal);
    sim.partition(&[&[R0]]);
    sim.run_until(at_ms(100));

    assert!(journal.received(R1).iter().all(|(_, from, _)| *from == R2));
    assert_eq!(journal.received(R1).len(), 10);
    assert!(journal.received(R0).is_empty());
    assert_eq!(journal.received(R2).len(), 10);
}

#[test]
fn partition_stops_datagrams_already_in_flight() {
    // Delays of 5 ms: a ping sent at 1 ms is still on its way at 3 ms, when
    // the partition comes up, and must not arrive at 6 ms.
    let slow = Network {
        delay_min: Duration::from_millis(5),
        delay_max: Duration::from_millis(5),
        ..Network::reliable()
    };
    let mut sim = Simulator::new(5, slow);
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 3), &journal);
    sim.schedule(at_ms(3), |sim| sim.partition(&[&[R0]]));
    sim.run_until(at_ms(50));
    assert!(
        journal.received(R1).is_empty(),
        "{:?}",
        journal.received(R1)
    );
    assert_eq!(sim.faults().cut_in_flight, 3);
}

#[test]
fn a_one_way_cut_blocks_one_direction_only() {
    let mut sim = Simulator::new(5, Network::reliable());
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 10), &journal);
    add_pinger(&mut sim, R2, pings(Dest::To(R1), 1, 10), &journal);
    // R1 hears R0 but cannot answer it; R2 is untouched.
    sim.cut(&[R1], &[R0]);
    sim.run_until(at_ms(50));
    assert_eq!(journal.received(R1).len(), 20);
    assert!(journal.received(R0).is_empty());
    assert_eq!(journal.received(R2).len(), 10);
    assert_eq!(sim.faults().oneway_cuts, 1);
    sim.heal();
    assert_eq!(sim.last_heal(), at_ms(50));
}

#[test]
fn a_paused_node_keeps_its_state_and_fires_its_timers_when_resumed() {
    let mut sim = Simulator::new(7, Network::reliable());
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 30), &journal);
    // Paused just after the ping of 10 ms left, before its pong is back.
    sim.schedule(at_us(10_050), |sim| sim.pause(R0));
    sim.schedule(at_us(20_500), |sim| sim.resume(R0));
    sim.run_until(at_ms(100));
    let sent = send_times(&journal.sent(R0));
    // Nothing was sent while paused; the overdue tick fired at the resume,
    // and the pinger went on counting from where it stopped: 30 pings, each
    // once.
    assert!(
        sent.values()
            .all(|t| !(at_us(10_100)..at_us(20_500)).contains(t))
    );
    assert_eq!(sent.len(), 30);
    assert!(sent.values().any(|t| *t == at_us(20_500)));
    // The pong that arrived while it was paused was lost.
    assert_eq!(journal.received(R0).len(), 29);
    assert_eq!(sim.faults().pauses, 1);
    assert_eq!(sim.last_heal(), at_us(20_500));
}

#[test]
fn liveness_is_judged_from_the_last_heal() {
    // A client of an echo that is cut off until 300 ms: with a bound of
    // 100 ms after the heal the client finishes; a bound counted from the
    // start would have given up first. With the heal never coming, the run
    // ends at its limit with the client unfinished.
    for (heal, finished) in [(Some(300), true), (None, false)] {
        let mut sim = Simulator::new(8, Network::reliable());
        sim.set_workload(numbered_ops(), Duration::ZERO);
        let journal = Journal::default();
        add_echo(&mut sim, R1, 0, &journal);
        add_echo_client(&mut sim, C1, 5, &journal);
        sim.partition(&[&[R1]]);
        match heal {
            Some(ms) => sim.schedule_fault(at_ms(ms), Simulator::heal),
            None => sim.schedule_fault(at_ms(10_000), |_| {}),
        }
        let done = sim.run_until_live(Duration::from_millis(100), at_ms(2_000));
        assert_eq!(done, finished);
        if finished {
            assert!(sim.now() >= at_ms(300) && sim.now() < at_ms(400));
        } else {
            assert_eq!(sim.now(), at_ms(2_000));
        }
    }
}

#[test]
fn the_trace_shows_deliveries_timers_faults_and_operations() {
    let mut sim = Simulator::new(9, Network::reliable());
    sim.enable_trace();
    sim.set_workload(numbered_ops(), Duration::ZERO);
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_echo_client(&mut sim, C1, 2, &journal);
    sim.schedule(at_ms(50), |sim| sim.crash(R1));
    sim.run_until(at_ms(60));
    let lines: Vec<String> = sim
        .trace()
        .expect("tracing")
        .iter()
        .map(ToString::to_string)
        .collect();
    let has = |node: &str, what: &str| {
        lines
            .iter()
            .any(|l| l[12..].starts_with(node) && l.contains(what))
    };
    assert!(has("replica 1", "<- client 1: 12 bytes"), "{lines:#?}");
    assert!(has("client 1", "invokes operation 0"), "{lines:#?}");
    assert!(has("client 1", "completes operation 1"), "{lines:#?}");
    assert!(has("replica 1", "fault: crash"), "{lines:#?}");
    assert!(lines[0].starts_with("   0.000000 "), "{}", lines[0]);
}

#[test]
fn the_trace_hash_covers_the_sender() {
    // The same bytes from another sender at the same time: another hash.
    let run = |sender: Addr| {
        let mut sim = Simulator::new(10, Network::reliable());
        let journal = Journal::default();
        add_echo(&mut sim, R1, 0, &journal);
        add_pinger(&mut sim, sender, pings(Dest::To(R1), 1, 1), &journal);
        sim.run_until(at_ms(10));
        sim.trace_hash()
    };
    assert_ne!(run(R0), run(R2));
}

#[test]
fn long_delays_carry_datagrams_far_past_the_rest() {
    let network = Network::laggy(0.3, Duration::from_millis(500));
    let mut sim = Simulator::new(11, network);
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 200), &journal);
    sim.run_until(at_ms(2_000));
    let sent = send_times(&journal.sent(R0));
    let late = journal
        .received(R1)
        .iter()
        .filter(|(at, _, msg)| *at > sent[&seq_of(msg)] + Duration::from_millis(100))
        .count();
    assert!(late > 10, "{late} pings arrived late");
    assert!(sim.faults().delayed > 10);
}

// ---------------------------------------------------------------------------
// Crash, restart, replace.
// ---------------------------------------------------------------------------

#[test]
fn crashed_node_gets_no_deliveries_or_timers_and_the_crash_is_counted() {
    let mut sim = Simulator::new(7, Network::reliable());
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 100), &journal);
    // Ping 11 leaves at 10ms; its pong cannot be back before 10.2ms.
    let crash = at_us(10_050);
    sim.schedule(crash, |sim| sim.crash(R0));
    sim.run_until(at_ms(50));

    assert!(!sim.is_running(R0));
    assert!(sim.is_running(R1));
    assert!(sim.node_counters(R0).is_none());
    assert_eq!(sim.faults().crashes, 1);
    // Nothing reached R0 after the crash: no pong, no timer.
    let after: Vec<_> = journal
        .of(R0)
        .into_iter()
        .filter(|(at, _)| *at > crash)
        .collect();
    assert!(after.is_empty(), "crashed node was called: {after:?}");
    // Though R1 did answer ping 11, after R0 crashed.
    let answered = journal
        .sent(R1)
        .into_iter()
        .find(|(_, _, msg)| *msg == Msg::Pong { seq: 11 })
        .expect("R1 answered ping 11");
    assert!(answered.0 > crash);
    assert_eq!(seq_counts(&journal.received(R0)).len(), 10);
    assert_eq!(sim.deliveries(), 21, "11 pings, 10 pongs");

    // Crashing a crashed node changes nothing.
    sim.crash(R0);
    assert_eq!(sim.faults().crashes, 1);
    // R0's counters were kept for the report: ten pongs.
    assert_eq!(sim.counters().get("pinger: pong"), 10);
}

#[test]
fn deliveries_to_a_crashed_node_vanish_until_it_restarts() {
    let mut sim = Simulator::new(8, Network::reliable());
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 40), &journal);
    sim.run_until(at_us(10_500));
    sim.crash(R1);
    let deliveries_at_crash = sim.deliveries();
    sim.run_until(at_us(20_500));
    assert_eq!(
        sim.deliveries(),
        deliveries_at_crash,
        "pings to the crashed R1 were delivered"
    );
    sim.restart(R1);
    sim.run_until(at_ms(100));

    let received: Vec<u64> = journal
        .received(R1)
        .iter()
        .map(|(_, _, msg)| seq_of(msg))
        .collect();
    // Pings 1..=11 left at 0..=10ms, 22..=40 at 21..=39ms; the ten between
    // went to a crashed node.
    let expected: Vec<u64> = (1..=11).chain(22..=40).collect();
    assert_eq!(received, expected);
    assert_eq!(journal.starts(R1), [Time::ZERO, at_us(20_500)]);
}

#[test]
fn restart_calls_the_factory_again_and_starts_fresh_state() {
    let mut sim = Simulator::new(9, Network::reliable());
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    let made = Rc::new(Cell::new(0));
    {
        let (made, journal) = (Rc::clone(&made), journal.clone());
        sim.add_node(
            R0,
            Box::new(move |rng| {
                made.set(made.get() + 1);
                let pinger = Pinger::new(pings(Dest::To(R1), 1, 100), journal.clone());
                Box::new(Node::new(R0, pinger, Arc::new(Codec { me: R0 }), rng))
            }),
        );
    }
    let (crash, restart) = (at_us(25_500), at_us(27_200));
    sim.schedule(crash, |sim| sim.crash(R0));
    sim.schedule(restart, |sim| sim.restart(R0));
    sim.run_until(at_ms(40));

    assert_eq!(made.get(), 2);
    assert!(sim.is_running(R0));
    assert_eq!(sim.faults().restarts, 1);
    assert_eq!(journal.starts(R0), [Time::ZERO, restart]);
    // Fresh state: numbering starts again from 1.
    let sent_after: Vec<(Time, u64)> = journal
        .sent(R0)
        .into_iter()
        .filter(|(at, _, _)| *at >= restart)
        .map(|(at, _, msg)| (at, seq_of(&msg)))
        .collect();
    assert_eq!(sent_after.first(), Some(&(restart, 1)));
    // The old incarnation's ticks (26ms, 27ms, ...) are gone; the new one
    // ticks every millisecond from its start.
    for (at, timer) in journal.fired(R0) {
        assert_eq!(timer, Timer::Tick);
        let phase = if at < crash { Time::ZERO } else { restart };
        assert_eq!(
            (at - phase).as_nanos() % 1_000_000,
            0,
            "tick at {at} off the schedule of the incarnation started at {phase}"
        );
    }
    assert!(journal.fired(R0).iter().any(|(at, _)| *at > restart));
    // The new incarnation's counters start from zero.
    let pongs_after = journal
        .received(R0)
        .iter()
        .filter(|(at, _, _)| *at > restart)
        .count() as u64;
    assert_eq!(
        sim.node_counters(R0).map(|c| c.get("pinger: pong")),
        Some(pongs_after)
    );
    assert_eq!(
        sim.counters().get("pinger: pong"),
        journal.received(R0).len() as u64
    );
}

/// The Node layer hides stale timer events (it fires only timers that are
/// due), so this uses a bare [`Process`] that logs every wake-up.
#[test]
fn restart_ignores_timer_events_of_the_old_incarnation() {
    let mut sim = Simulator::new(10, Network::reliable());
    let wakes = Rc::new(RefCell::new(Vec::new()));
    let made = Rc::new(Cell::new(0));
    {
        let (wakes, made) = (Rc::clone(&wakes), Rc::clone(&made));
        sim.add_node(
            R0,
            Box::new(move |_rng| {
                made.set(made.get() + 1);
                Box::new(Sleeper {
                    addr: R0,
                    incarnation: made.get(),
                    delay: Duration::from_millis(10),
                    deadline: None,
                    wakes: Rc::clone(&wakes),
                    counters: Counters::default(),
                })
            }),
        );
    }
    // Incarnation 1 sleeps until 10ms, but crashes at 5ms; incarnation 2
    // starts at 6ms and sleeps until 16ms.
    sim.run_until(at_ms(5));
    sim.crash(R0);
    sim.run_until(at_ms(6));
    sim.restart(R0);
    sim.run_until(at_ms(30));
    assert_eq!(*wakes.borrow(), [(2, at_ms(16))]);
}

#[test]
fn replace_puts_another_process_at_the_same_address() {
    let mut sim = Simulator::new(11, Network::reliable());
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 30), &journal);
    let swap = at_us(10_500);
    {
        let journal = journal.clone();
        sim.schedule(swap, move |sim| {
            // Same address, different behaviour: pongs numbered 1000 higher.
            let echo = Echo {
                pong_offset: 1000,
                journal,
            };
            let node = Node::new(R1, echo, Arc::new(Codec { me: R1 }), Rng::new(1));
            sim.replace(R1, Box::new(node));
        });
    }
    sim.run_until(at_ms(100));

    assert!(sim.is_running(R1));
    assert_eq!(journal.starts(R1), [Time::ZERO, swap]);
    let pongs: Vec<u64> = journal
        .received(R0)
        .iter()
        .map(|(_, _, msg)| seq_of(msg))
        .collect();
    // Pings 1..=11 (0..=10ms) met the old echo, 12..=30 the new one.
    let expected: Vec<u64> = (1..=11).chain(1012..=1030).collect();
    assert_eq!(pongs, expected);
    assert_eq!(
        sim.faults().byzantine,
        1,
        "a replacement counts as Byzantine"
    );
}

// ---------------------------------------------------------------------------
// Byzantine senders and noise.
// ---------------------------------------------------------------------------

#[test]
fn byzantine_silent_sends_nothing() {
    let (sim, journal) = byzantine_pinger(12, Box::new(Byzantine::Silent), 10);
    assert_eq!(journal.sent(R0).len(), 10, "the pinger did try");
    assert!(journal.received(R1).is_empty());
    assert_eq!(sim.deliveries(), 0);
    assert_eq!(sim.faults().byzantine, 10);
}

#[test]
fn byzantine_corrupt_alters_bytes_and_the_receiver_counts_decode_drops() {
    let (sim, journal) = byzantine_pinger(13, Box::new(Byzantine::Corrupt { flips: 2 }), 100);
    let counters = sim.node_counters(R1).expect("R1 runs");
    let drops = decode_drops(counters);
    let received = journal.received(R1);
    assert!(drops > 0, "no corrupted ping failed to decode");
    // A ping whose claimed sender was corrupted into another node is dropped
    // by the runtime: it did not come from that node's address.
    let misattributed = counters.get(runtime::node::WRONG_SOURCE);
    assert_eq!(
        received.len() + (drops + misattributed) as usize,
        100,
        "one datagram per ping"
    );
    // Some corrupted pings still decode, as something R0 never sent.
    let sent: Vec<Msg> = journal.sent(R0).into_iter().map(|(_, _, m)| m).collect();
    let altered = received
        .iter()
        .filter(|(_, from, msg)| *from != R0 || !sent.contains(msg))
        .count();
    assert!(altered > 0, "every decodable ping was intact");
}

#[test]
fn byzantine_duplicate_sends_each_datagram_copies_times() {
    let (sim, journal) = byzantine_pinger(14, Box::new(Byzantine::Duplicate { copies: 3 }), 10);
    let pings_received = seq_counts(&journal.received(R1));
    let pongs_received = seq_counts(&journal.received(R0));
    for seq in 1..=10 {
        assert_eq!(pings_received.get(&seq), Some(&3), "ping {seq}");
        // The echo is honest: one pong per ping copy.
        assert_eq!(pongs_received.get(&seq), Some(&3), "pong {seq}");
    }
    assert_eq!(sim.deliveries(), 60);
}

#[test]
fn byzantine_garbage_is_dropped_by_the_receivers_decoder() {
    let (sim, journal) = byzantine_pinger(15, Box::new(Byzantine::Garbage), 50);
    assert!(journal.received(R1).is_empty());
    assert_eq!(decode_drops(sim.node_counters(R1).expect("R1 runs")), 50);
    assert_eq!(sim.deliveries(), 50);
}

/// A tamperer is offered a broadcast once per destination, never for the
/// sender itself, and may send each destination something else: here R1 gets
/// the truth, R2 a different ping, and R3's copy goes to R1 instead.
#[test]
fn tamperer_sees_each_replica_destination_and_can_equivocate_and_redirect() {
    let mut sim = Simulator::new(16, Network::reliable());
    let journal = Journal::default();
    for echo in [R1, R2, R3] {
        add_echo(&mut sim, echo, 0, &journal);
    }
    add_pinger(&mut sim, R0, pings(Dest::Replicas, 1, 5), &journal);
    let offered = Rc::new(RefCell::new(Vec::new()));
    {
        let offered = Rc::clone(&offered);
        let tamper =
            move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
                offered.borrow_mut().push(to);
                let codec = Codec { me: R0 };
                match to {
                    R1 => out.push((R1, bytes)),
                    R2 => {
                        let Ok((_, Msg::Ping { seq })) = codec.decode(Source::Other, &bytes) else {
                            panic!("R0 sends pings only");
                        };
                        let mut lie = Vec::new();
                        codec
                            .encode(&Msg::Ping { seq: seq + 100 }, &mut lie)
                            .expect("a ping encodes");
                        out.push((R2, lie));
                    }
                    _ => out.push((R1, bytes)),
                }
            };
        sim.set_byzantine(R0, Box::new(tamper));
    }
    sim.run_until(at_ms(100));

    assert_eq!(*offered.borrow(), [R1, R2, R3].repeat(5));
    let seqs = |to: Addr| {
        let mut seqs: Vec<u64> = journal
            .received(to)
            .iter()
            .map(|(_, _, msg)| seq_of(msg))
            .collect();
        seqs.sort_unstable();
        seqs
    };
    assert_eq!(seqs(R1), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    assert_eq!(seqs(R2), [101, 102, 103, 104, 105]);
    assert!(seqs(R3).is_empty());
    // R0 hears the echoes, never its own broadcast.
    let heard = journal.received(R0);
    assert_eq!(heard.len(), 15);
    assert!(
        heard
            .iter()
            .all(|(_, from, msg)| *from != R0 && matches!(msg, Msg::Pong { .. }))
    );
    assert_eq!(sim.faults().byzantine, 15);
}

#[test]
fn noise_sends_random_datagrams_at_its_target_every_interval() {
    let mut sim = Simulator::new(17, Network::reliable());
    let arrivals = Arrivals::default();
    {
        let arrivals = Rc::clone(&arrivals);
        sim.add_node(
            R1,
            Box::new(move |_rng| {
                Box::new(Recorder {
                    addr: R1,
                    arrivals: Rc::clone(&arrivals),
                    counters: Counters::default(),
                })
            }),
        );
    }
    let interval = Duration::from_millis(1);
    sim.add_node(
        OUTSIDER,
        Box::new(move |rng| Box::new(Noise::new(OUTSIDER, R1, interval, rng))),
    );
    sim.run_until(at_us(10_500));

    let arrivals = arrivals.borrow();
    assert_eq!(arrivals.len(), 10);
    for (k, (at, _)) in (1..).zip(arrivals.iter()) {
        let sent = at_ms(k);
        let window = sent + Duration::from_micros(100)..=sent + Duration::from_micros(200);
        assert!(window.contains(at), "datagram {k} arrived at {at}");
    }
    // Random: a few may be empty, the rest all differ.
    let mut datagrams: Vec<&Vec<u8>> = arrivals
        .iter()
        .map(|(_, bytes)| bytes)
        .filter(|bytes| !bytes.is_empty())
        .collect();
    assert!(datagrams.len() >= 5, "mostly empty: {datagrams:?}");
    let count = datagrams.len();
    datagrams.sort();
    datagrams.dedup();
    assert_eq!(datagrams.len(), count, "noise repeats itself");
}

// ---------------------------------------------------------------------------
// Clients: the closed-loop workload and its history.
// ---------------------------------------------------------------------------

#[test]
fn closed_loop_client_issues_exactly_ops_operations_one_at_a_time() {
    let mut sim = Simulator::new(18, Network::reliable());
    let think_time_max = Duration::from_millis(2);
    sim.set_workload(numbered_ops(), think_time_max);
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_echo_client(&mut sim, C1, 20, &journal);
    add_echo_client(&mut sim, C2, 7, &journal);
    assert!(sim.run_until_clients_done(at_ms(1_000)));

    assert_eq!(sim.ops_completed(), 27);
    for (client, ops) in [(ClientId(1), 20), (ClientId(2), 7)] {
        let history: Vec<&Operation> = sim
            .history()
            .iter()
            .filter(|op| op.client == client)
            .collect();
        assert_eq!(history.len(), ops, "client {}", client.0);
        for (n, op) in (1..).zip(&history) {
            assert_eq!(op.op, format!("c{}-op{n}", client.0).into_bytes());
            let (completed, result) = op.completed.as_ref().expect("completed");
            assert_eq!(result, &op.op, "the echo's result is recorded");
            // A round trip takes at least two hops.
            assert!(*completed >= op.invoked + Duration::from_micros(200));
        }
        for pair in history.windows(2) {
            let (previous_done, _) = pair[0].completed.as_ref().expect("completed");
            let think = pair[1].invoked - *previous_done;
            assert!(
                pair[1].invoked > *previous_done && think <= think_time_max,
                "client {} invoked at {} after completing at {previous_done}",
                client.0,
                pair[1].invoked
            );
        }
    }
}

#[test]
fn run_until_clients_done_is_false_at_the_time_limit_and_true_once_done() {
    let mut sim = Simulator::new(19, Network::reliable());
    sim.set_workload(numbered_ops(), Duration::from_millis(1));
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_echo_client(&mut sim, C1, 3, &journal);
    sim.partition(&[&[C1], &[R1]]);

    assert!(!sim.run_until_clients_done(at_ms(100)));
    assert_eq!(sim.now(), at_ms(100));
    assert_eq!(sim.history().len(), 1);
    assert_eq!(sim.ops_completed(), 0);
    assert!(
        journal.sent(C1).len() > 10,
        "the client kept retransmitting"
    );

    sim.heal();
    assert!(sim.run_until_clients_done(at_ms(200)));
    assert_eq!(sim.ops_completed(), 3);
    let (first_done, _) = sim.history()[0].completed.as_ref().expect("completed");
    assert!(*first_done > at_ms(100));
}

#[test]
fn crashed_client_leaves_its_operation_incomplete_and_issues_no_more() {
    let mut sim = Simulator::new(20, Network::reliable());
    sim.set_workload(numbered_ops(), Duration::from_millis(1));
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_echo_client(&mut sim, C1, 1_000, &journal);
    add_echo_client(&mut sim, C2, 5, &journal);
    let c1_ops = |sim: &Simulator| -> Vec<Operation> {
        sim.history()
            .iter()
            .filter(|op| op.client == ClientId(1))
            .cloned()
            .collect()
    };
    // Step until C1 has completed three operations and has a fourth out.
    while !(c1_ops(&sim).len() == 4 && c1_ops(&sim)[3].completed.is_none()) {
        assert!(sim.step(), "ran out of events");
    }
    let crash = sim.now();
    sim.crash(C1);

    assert!(
        sim.run_until_clients_done(at_ms(1_000)),
        "a crashed client still counts as busy"
    );
    sim.run_until(sim.now() + Duration::from_millis(50));
    let ops = c1_ops(&sim);
    assert_eq!(ops.len(), 4, "the crashed client issued more operations");
    assert!(ops[..3].iter().all(|op| op.completed.is_some()));
    assert!(ops[3].completed.is_none());
    assert!(journal.of(C1).iter().all(|(at, _)| *at <= crash));
    assert_eq!(sim.faults().crashes, 1);

    // A restarted client is a fresh process with nothing left to do.
    sim.restart(C1);
    sim.run_until(sim.now() + Duration::from_millis(50));
    assert_eq!(c1_ops(&sim).len(), 4);
    assert_eq!(journal.starts(C1).len(), 2);
}

#[test]
fn replaced_client_keeps_issuing_operations() {
    let mut sim = Simulator::new(21, Network::reliable());
    sim.set_workload(numbered_ops(), Duration::from_millis(10));
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_echo_client(&mut sim, C1, 3, &journal);
    // Between operations: the first has completed, the next is not invoked.
    while sim
        .history()
        .first()
        .is_none_or(|op| op.completed.is_none())
    {
        assert!(sim.step(), "ran out of events");
    }
    assert_eq!(sim.history().len(), 1);
    let client = EchoClient::new(R1, journal.clone());
    let node = Node::new(C1, client, Arc::new(Codec { me: C1 }), Rng::new(1));
    sim.replace(C1, Box::new(ClientNode(node)));

    assert!(
        sim.run_until_clients_done(at_ms(1_000)),
        "the replaced client never issued its remaining operations: {:?}",
        sim.history()
    );
    assert_eq!(sim.ops_completed(), 3);
}

// ---------------------------------------------------------------------------
// Timers.
// ---------------------------------------------------------------------------

/// The script is [`TimerProbe`]'s. A message handler moves C later (so the
/// simulator's timer event for C's old deadline goes stale) and D earlier
/// (so the simulator must queue an earlier event); a timer handler moves B
/// later, re-arms D after it fired, and cancels A; E is cancelled before it is
/// due, and armed again with no delay each time D fires.
#[test]
fn timers_fire_at_their_latest_deadline_and_cancelled_ones_never() {
    let fixed = Network {
        delay_min: Duration::from_millis(1),
        delay_max: Duration::from_millis(1),
        ..Network::reliable()
    };
    let mut sim = Simulator::new(22, fixed);
    let journal = Journal::default();
    {
        let journal = journal.clone();
        sim.add_node(
            R1,
            Box::new(move |rng| {
                let probe = TimerProbe {
                    journal: journal.clone(),
                };
                Box::new(Node::new(R1, probe, Arc::new(Codec { me: R1 }), rng))
            }),
        );
    }
    // One ping, arriving at exactly 1ms.
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 1), &journal);
    sim.run_until(at_ms(200));

    assert_eq!(
        journal.fired(R1),
        [
            (at_ms(3), Timer::D),
            (at_ms(3), Timer::E),
            (at_ms(9), Timer::C),
            (at_ms(11), Timer::D),
            (at_ms(11), Timer::E),
            (at_ms(50), Timer::B),
        ]
    );
}

// ---------------------------------------------------------------------------
// Determinism and scripted actions.
// ---------------------------------------------------------------------------

#[test]
fn same_seed_gives_the_same_trace_history_and_counters() {
    let first = busy_run(23);
    let second = busy_run(23);
    assert!(first.deliveries > 100, "the run did something");
    assert!(first.faults.total() > 10, "the run had faults");
    assert_eq!(first, second);
}

#[test]
fn different_seed_gives_a_different_trace_hash() {
    let a = busy_run(24);
    let b = busy_run(25);
    assert_ne!(a.trace_hash, b.trace_hash);
    let ops = |outcome: &Outcome| -> Vec<Vec<u8>> {
        outcome.history.iter().map(|op| op.op.clone()).collect()
    };
    assert_ne!(ops(&a), ops(&b), "the workload draws from the seed");
}

/// Two runs that differ only in what the datagrams say, not in when they
/// travel: the echo numbers its pongs differently.
#[test]
fn trace_hash_covers_datagram_contents() {
    let run = |pong_offset: u64| {
        let mut sim = Simulator::new(27, Network::reliable());
        let journal = Journal::default();
        add_echo(&mut sim, R1, pong_offset, &journal);
        add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 10), &journal);
        sim.run_until(at_ms(100));
        let times: Vec<Time> = journal.entries().iter().map(|e| e.at).collect();
        (sim.trace_hash(), times)
    };
    let (hash_a, times_a) = run(0);
    let (hash_b, times_b) = run(1);
    assert_eq!(times_a, times_b, "same timing");
    assert_ne!(hash_a, hash_b);
}

/// The workload has its own random stream, so that how many network draws a
/// datagram takes does not change which operations a client issues. (With
/// one client only: clients share the stream, so with several the order in
/// which they ask, which depends on timing, decides who gets which draw.)
#[test]
fn workload_operations_do_not_depend_on_the_network() {
    let ops = |network: Network| {
        let mut sim = Simulator::new(28, network);
        sim.set_workload(
            Box::new(|rng: &mut Rng, _: ClientId| rng.next_u64().to_le_bytes().to_vec()),
            Duration::from_millis(1),
        );
        let journal = Journal::default();
        add_echo(&mut sim, R1, 0, &journal);
        add_echo_client(&mut sim, C1, 20, &journal);
        assert!(sim.run_until_clients_done(at_ms(10_000)));
        let history = sim.history().to_vec();
        let ops: Vec<Vec<u8>> = history.iter().map(|op| op.op.clone()).collect();
        (ops, history)
    };
    let (reliable_ops, reliable) = ops(Network::reliable());
    let (faulty_ops, faulty) = ops(Network::faulty(0.2));
    assert_ne!(reliable, faulty, "the runs differ in timing");
    assert_eq!(reliable_ops, faulty_ops);
}

#[test]
fn scheduled_actions_run_at_their_time_in_order() {
    let mut sim = Simulator::new(26, Network::reliable());
    let log: Rc<RefCell<Vec<(&'static str, Time)>>> = Rc::default();
    let note = |name: &'static str| {
        let log = Rc::clone(&log);
        move |sim: &mut Simulator| log.borrow_mut().push((name, sim.now()))
    };
    sim.schedule(at_ms(30), note("thirty"));
    sim.schedule(at_ms(20), note("twenty a"));
    sim.schedule(at_ms(10), note("ten"));
    sim.schedule(at_ms(20), note("twenty b"));
    {
        let nested = note("fifteen, scheduled at ten");
        let log = Rc::clone(&log);
        sim.schedule(at_ms(10), move |sim| {
            log.borrow_mut().push(("ten again", sim.now()));
            sim.schedule(at_ms(15), nested);
        });
    }
    sim.run_until(at_ms(25));
    assert_eq!(sim.now(), at_ms(25), "run_until moves the clock to its end");
    // A time already past means now.
    sim.schedule(at_ms(5), note("five, scheduled at twenty-five"));
    sim.run_until(at_ms(40));
    assert_eq!(
        *log.borrow(),
        [
            ("ten", at_ms(10)),
            ("ten again", at_ms(10)),
            ("fifteen, scheduled at ten", at_ms(15)),
            ("twenty a", at_ms(20)),
            ("twenty b", at_ms(20)),
            ("five, scheduled at twenty-five", at_ms(25)),
            ("thirty", at_ms(30)),
        ]
    );
    assert_eq!(sim.now(), at_ms(40));
}

// ---------------------------------------------------------------------------
// Twins.
// ---------------------------------------------------------------------------

/// A twin of the echo at R1 that answers 1,000 higher, so that each pong
/// says which copy sent it.
fn add_echo_twin(sim: &mut Simulator) -> NodeRef {
    let journal = Journal::default();
    sim.add_twin(
        R1,
        Box::new(move |rng| {
            let echo = Echo {
                pong_offset: TWIN_OFFSET,
                journal: journal.clone(),
            };
            Box::new(Node::new(R1, echo, Arc::new(Codec { me: R1 }), rng))
        }),
    )
}

const TWIN_OFFSET: u64 = 1_000;

/// The pongs `node` received from R1, by the copy that sent them (the
/// original's, the twin's).
fn pongs_by_copy(journal: &Journal, node: Addr) -> (Vec<u64>, Vec<u64>) {
    let (mut first, mut twin) = (Vec::new(), Vec::new());
    for (_, from, msg) in journal.received(node) {
        if from != R1 {
            continue; // Another pinger's pings.
        }
        match msg {
            Msg::Pong { seq } if seq > TWIN_OFFSET => twin.push(seq - TWIN_OFFSET),
            Msg::Pong { seq } => first.push(seq),
            other => panic!("unexpected {other:?}"),
        }
    }
    first.sort_unstable();
    twin.sort_unstable();
    (first, twin)
}

#[test]
fn a_twin_receives_what_is_sent_to_its_address_and_answers_as_from_it() {
    let mut sim = Simulator::new(40, Network::reliable());
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    let twin = add_echo_twin(&mut sim);
    assert_eq!(twin, NodeRef::new(R1, 1));
    assert_eq!(sim.twins_of(R1), vec![twin]);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 20), &journal);
    add_pinger(&mut sim, R2, pings(Dest::Replicas, 1, 20), &journal);
    sim.run_until(at_ms(100));

    let all: Vec<u64> = (1..=20).collect();
    // Every ping reached both copies, and each answered it as R1.
    assert_eq!(pongs_by_copy(&journal, R0), (all.clone(), all.clone()));
    assert_eq!(pongs_by_copy(&journal, R2), (all.clone(), all));
    assert_eq!(sim.faults().byzantine, 1, "a twin is a Byzantine fault");
}

#[test]
fn partitions_by_node_split_twins_and_by_address_move_them_together() {
    let mut sim = Simulator::new(41, Network::reliable());
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    let twin = add_echo_twin(&mut sim);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 60), &journal);
    add_pinger(&mut sim, R2, pings(Dest::To(R1), 1, 60), &journal);
    // 0-20 ms: R0 with the original, R2 with the twin. 20-40 ms: both
    // copies away from both pingers. Then healed.
    let first = NodeRef::from(R1);
    sim.schedule(at_us(500), move |sim| {
        sim.partition_nodes(&[&[R0.into(), first], &[R2.into(), twin]]);
    });
    sim.schedule(at_us(20_500), |sim| sim.partition(&[&[R1]]));
    sim.schedule(at_us(40_500), Simulator::heal);
    sim.run_until(at_ms(100));

    let (r0_first, r0_twin) = pongs_by_copy(&journal, R0);
    let (r2_first, r2_twin) = pongs_by_copy(&journal, R2);
    let split = |seqs: &[u64], range: std::ops::RangeInclusive<u64>| {
        seqs.iter().filter(|s| range.contains(s)).count()
    };
    // While split, each pinger hears only its own copy.
    assert_eq!(split(&r0_first, 2..=20), 19);
    assert_eq!(split(&r0_twin, 2..=20), 0);
    assert_eq!(split(&r2_first, 2..=20), 0);
    assert_eq!(split(&r2_twin, 2..=20), 19);
    // Partitioned by address, both copies are away.
    for seqs in [&r0_first, &r0_twin, &r2_first, &r2_twin] {
        assert_eq!(split(seqs, 22..=40), 0);
        // Healed: both copies again.
        assert_eq!(split(seqs, 42..=60), 19);
    }
}

#[test]
fn a_twin_crashes_pauses_and_restarts_with_its_address() {
    let mut sim = Simulator::new(42, Network::reliable());
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_echo_twin(&mut sim);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, 60), &journal);
    sim.schedule(at_us(10_500), |sim| sim.crash(R1));
    sim.schedule(at_us(20_500), |sim| sim.restart(R1));
    sim.schedule(at_us(30_500), |sim| sim.pause(R1));
    sim.schedule(at_us(40_500), |sim| sim.resume(R1));
    sim.run_until(at_ms(100));

    let (first, twin) = pongs_by_copy(&journal, R0);
    assert_eq!(first, twin, "the copies were down and up together");
    assert!(
        first
            .iter()
            .all(|s| !(12..=20).contains(s) && !(32..=40).contains(s))
    );
    assert_eq!(first.len(), 40);
    assert_eq!(sim.faults().crashes, 2);
    assert_eq!(sim.faults().restarts, 2);
}

#[test]
fn runs_with_a_twin_are_deterministic() {
    let run = || {
        let mut sim = Simulator::new(43, Network::faulty(0.1));
        let journal = Journal::default();
        add_echo(&mut sim, R1, 0, &journal);
        add_echo_twin(&mut sim);
        add_pinger(&mut sim, R0, pings(Dest::To(R1), 2, 40), &journal);
        sim.run_until(at_ms(100));
        (sim.trace_hash(), journal.entries())
    };
    assert_eq!(run(), run());
}

// ---------------------------------------------------------------------------
// The test protocol.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Msg {
    Ping {
        seq: u64,
    },
    Pong {
        seq: u64,
    },
    Request {
        num: u64,
        op: Vec<u8>,
    },
    /// Says which client it is for, so that [`Client::recipient`] can tell.
    Reply {
        client: ClientId,
        num: u64,
        result: Vec<u8>,
    },
}

/// Every timer of every test state, in one field-less enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Pinger: send the next burst.
    Tick,
    /// EchoClient: retransmit the outstanding request.
    Resend,
    /// TimerProbe's timers.
    A,
    B,
    C,
    D,
    E,
}

/// The codec: `(sender, kind, number, client, payload)` through
/// `wire::codec`, `client` being the recipient of a reply and 0 otherwise. A
/// tuple rather than a derived enum because `bincode` is not a dependency of
/// this crate; `wire::codec` works on any type that already encodes, and
/// tuples of `Addr`, integers and bytes do. The sender is claimed, not
/// authenticated.
#[derive(Debug)]
struct Codec {
    me: Addr,
}

const KIND_PING: u8 = 0;
const KIND_PONG: u8 = 1;
const KIND_REQUEST: u8 = 2;
const KIND_REPLY: u8 = 3;

impl SharedState for Codec {
    type Message = Msg;
    type Outbound = Msg;

    fn decode(&self, _source: Source, bytes: &[u8]) -> Result<(Addr, Msg), DropReason> {
        let (from, kind, number, client, payload) =
            wire::codec::decode::<(Addr, u8, u64, u64, Vec<u8>)>(bytes)?;
        if kind != KIND_REPLY && client != 0 {
            return Err(DropReason("decode: client on a non-reply"));
        }
        let msg = match kind {
            KIND_PING | KIND_PONG if !payload.is_empty() => {
                return Err(DropReason("decode: payload on ping or pong"));
            }
            KIND_PING => Msg::Ping { seq: number },
            KIND_PONG => Msg::Pong { seq: number },
            KIND_REQUEST => Msg::Request {
                num: number,
                op: payload,
            },
            KIND_REPLY => Msg::Reply {
                client: ClientId(client),
                num: number,
                result: payload,
            },
            _ => return Err(DropReason("decode: unknown kind")),
        };
        Ok((from, msg))
    }

    fn encode(&self, msg: &Msg, buf: &mut Vec<u8>) -> Result<(), DropReason> {
        let (kind, number, client, payload): (u8, u64, u64, &[u8]) = match msg {
            Msg::Ping { seq } => (KIND_PING, *seq, 0, &[]),
            Msg::Pong { seq } => (KIND_PONG, *seq, 0, &[]),
            Msg::Request { num, op } => (KIND_REQUEST, *num, 0, op),
            Msg::Reply {
                client,
                num,
                result,
            } => (KIND_REPLY, *num, client.0, result),
        };
        wire::codec::encode(&(self.me, kind, number, client, payload), buf)?;
        Ok(())
    }
}

/// What a pinger sends: `burst` pings every `interval`, `count` in all, to
/// `peer`.
#[derive(Clone, Copy, Debug)]
struct Pings {
    peer: Dest,
    interval: Duration,
    burst: u64,
    count: u64,
}

fn pings(peer: Dest, burst: u64, count: u64) -> Pings {
    Pings {
        peer,
        interval: Duration::from_millis(1),
        burst,
        count,
    }
}

/// Sends numbered pings and counts the pongs.
#[derive(Debug)]
struct Pinger {
    pings: Pings,
    /// Number of the latest ping sent; 0 before the first.
    seq: u64,
    journal: Journal,
}

impl Pinger {
    fn new(pings: Pings, journal: Journal) -> Pinger {
        Pinger {
            pings,
            seq: 0,
            journal,
        }
    }

    fn send_pings(&mut self, ctx: &mut Context<'_, Msg, Timer>) {
        for _ in 0..self.pings.burst {
            if self.seq == self.pings.count {
                break;
            }
            self.seq += 1;
            let msg = Msg::Ping { seq: self.seq };
            self.journal.record(
                ctx,
                Event::Sent {
                    to: self.pings.peer,
                    msg: msg.clone(),
                },
            );
            match self.pings.peer {
                Dest::To(to) => ctx.send(to, msg),
                Dest::Replicas => ctx.send_to_replicas(msg),
            }
        }
        if self.seq < self.pings.count {
            ctx.set_timer(Timer::Tick, self.pings.interval);
        }
    }
}

impl State for Pinger {
    type Message = Msg;
    type Outbound = Msg;
    type Timer = Timer;
    type Shared = Codec;

    /// The first burst goes out from a timer armed with no delay rather than
    /// from here, so that a test can make the node Byzantine (which needs it
    /// added, and adding starts it) before it sends anything.
    fn on_start(&mut self, ctx: &mut Context<'_, Msg, Timer>) {
        self.journal.record(ctx, Event::Start);
        ctx.set_timer(Timer::Tick, Duration::ZERO);
    }

    fn on_message(&mut self, from: Addr, msg: Msg, ctx: &mut Context<'_, Msg, Timer>) {
        self.journal.record(
            ctx,
            Event::Received {
                from,
                msg: msg.clone(),
            },
        );
        match msg {
            Msg::Pong { .. } => ctx.count("pinger: pong"),
            _ => ctx.drop_message("pinger: not a pong"),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_, Msg, Timer>) {
        self.journal.record(ctx, Event::Fired(timer));
        match timer {
            Timer::Tick => self.send_pings(ctx),
            _ => ctx.drop_message("pinger: not its timer"),
        }
    }
}

/// Answers pings with pongs (numbered `pong_offset` higher) and requests with
/// replies carrying the operation back.
#[derive(Debug)]
struct Echo {
    pong_offset: u64,
    journal: Journal,
}

impl State for Echo {
    type Message = Msg;
    type Outbound = Msg;
    type Timer = Timer;
    type Shared = Codec;

    fn on_start(&mut self, ctx: &mut Context<'_, Msg, Timer>) {
        self.journal.record(ctx, Event::Start);
    }

    fn on_message(&mut self, from: Addr, msg: Msg, ctx: &mut Context<'_, Msg, Timer>) {
        self.journal.record(
            ctx,
            Event::Received {
                from,
                msg: msg.clone(),
            },
        );
        let answer = match msg {
            Msg::Ping { seq } => Msg::Pong {
                seq: seq + self.pong_offset,
            },
            Msg::Request { num, op } => {
                let Addr::Client(client) = from else {
                    ctx.drop_message("echo: request from a non-client");
                    return;
                };
                Msg::Reply {
                    client,
                    num,
                    result: op,
                }
            }
            Msg::Pong { .. } | Msg::Reply { .. } => {
                ctx.drop_message("echo: not a ping or request");
                return;
            }
        };
        self.journal.record(
            ctx,
            Event::Sent {
                to: Dest::To(from),
                msg: answer.clone(),
            },
        );
        ctx.send(from, answer);
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_, Msg, Timer>) {
        self.journal.record(ctx, Event::Fired(timer));
        ctx.drop_message("echo: has no timers");
    }
}

/// A closed-loop client of an [`Echo`]: one request outstanding, resent every
/// [`EchoClient::RESEND_INTERVAL`] until its reply comes.
#[derive(Debug)]
struct EchoClient {
    server: Addr,
    /// Number of the latest request; 0 before the first.
    num: u64,
    outstanding: Option<Vec<u8>>,
    result: Option<Vec<u8>>,
    journal: Journal,
}

impl EchoClient {
    const RESEND_INTERVAL: Duration = Duration::from_millis(5);

    fn new(server: Addr, journal: Journal) -> EchoClient {
        EchoClient {
            server,
            num: 0,
            outstanding: None,
            result: None,
            journal,
        }
    }

    fn send_request(&mut self, op: Vec<u8>, ctx: &mut Context<'_, Msg, Timer>) {
        let msg = Msg::Request { num: self.num, op };
        self.journal.record(
            ctx,
            Event::Sent {
                to: Dest::To(self.server),
                msg: msg.clone(),
            },
        );
        ctx.send(self.server, msg);
        ctx.set_timer(Timer::Resend, Self::RESEND_INTERVAL);
    }
}

impl State for EchoClient {
    type Message = Msg;
    type Outbound = Msg;
    type Timer = Timer;
    type Shared = Codec;

    fn on_start(&mut self, ctx: &mut Context<'_, Msg, Timer>) {
        self.journal.record(ctx, Event::Start);
    }

    fn on_message(&mut self, from: Addr, msg: Msg, ctx: &mut Context<'_, Msg, Timer>) {
        self.journal.record(
            ctx,
            Event::Received {
                from,
                msg: msg.clone(),
            },
        );
        let Msg::Reply { num, result, .. } = msg else {
            ctx.drop_message("client: not a reply");
            return;
        };
        if num != self.num || self.outstanding.is_none() {
            ctx.drop_message("client: stale reply");
            return;
        }
        self.outstanding = None;
        self.result = Some(result);
        ctx.cancel_timer(Timer::Resend);
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_, Msg, Timer>) {
        self.journal.record(ctx, Event::Fired(timer));
        match (timer, self.outstanding.clone()) {
            (Timer::Resend, Some(op)) => self.send_request(op, ctx),
            _ => ctx.drop_message("client: spurious timer"),
        }
    }
}

impl Client for EchoClient {
    fn invoke(&mut self, op: &[u8], ctx: &mut Context<'_, Msg, Timer>) {
        assert!(
            self.outstanding.is_none() && self.result.is_none(),
            "invoked with an operation outstanding"
        );
        self.num += 1;
        self.outstanding = Some(op.to_vec());
        self.send_request(op.to_vec(), ctx);
    }

    fn take_result(&mut self) -> Option<Vec<u8>> {
        self.result.take()
    }

    fn recipient(msg: &Msg) -> Option<ClientId> {
        match msg {
            Msg::Reply { client, .. } => Some(*client),
            _ => None,
        }
    }
}

/// Sets, re-arms and cancels timers on a fixed script; see
/// `timers_fire_at_their_latest_deadline_and_cancelled_ones_never`.
#[derive(Debug)]
struct TimerProbe {
    journal: Journal,
}

impl State for TimerProbe {
    type Message = Msg;
    type Outbound = Msg;
    type Timer = Timer;
    type Shared = Codec;

    fn on_start(&mut self, ctx: &mut Context<'_, Msg, Timer>) {
        self.journal.record(ctx, Event::Start);
        ctx.set_timer(Timer::A, Duration::from_millis(10));
        ctx.set_timer(Timer::A, Duration::from_millis(12));
        ctx.set_timer(Timer::B, Duration::from_millis(20));
        ctx.set_timer(Timer::C, Duration::from_millis(5));
        ctx.set_timer(Timer::D, Duration::from_millis(100));
        ctx.set_timer(Timer::E, Duration::from_millis(10));
        ctx.cancel_timer(Timer::E);
        ctx.cancel_timer(Timer::E);
        assert!(ctx.timer_is_set(Timer::A));
        assert!(!ctx.timer_is_set(Timer::E));
    }

    /// The ping at 1ms moves C from 5ms to 9ms, and D from 100ms to 3ms.
    fn on_message(&mut self, from: Addr, msg: Msg, ctx: &mut Context<'_, Msg, Timer>) {
        self.journal.record(ctx, Event::Received { from, msg });
        ctx.set_timer(Timer::C, Duration::from_millis(8));
        ctx.set_timer(Timer::D, Duration::from_millis(2));
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_, Msg, Timer>) {
        self.journal.record(ctx, Event::Fired(timer));
        match timer {
            // At 9ms: B from 20ms to 50ms, D (fired at 3ms) to 11ms, A (12ms)
            // off.
            Timer::C => {
                ctx.set_timer(Timer::B, Duration::from_millis(41));
                ctx.set_timer(Timer::D, Duration::from_millis(2));
                ctx.cancel_timer(Timer::A);
            }
            // At 3ms and 11ms: E again, due at once.
            Timer::D => ctx.set_timer(Timer::E, Duration::ZERO),
            _ => {}
        }
    }
}

/// A bare process that sleeps `delay` from its start, and logs every time the
/// simulator wakes it, with its incarnation.
struct Sleeper {
    addr: Addr,
    incarnation: u32,
    delay: Duration,
    deadline: Option<Time>,
    wakes: Rc<RefCell<Vec<(u32, Time)>>>,
    counters: Counters,
}

impl Process for Sleeper {
    fn addr(&self) -> Addr {
        self.addr
    }

    fn start(&mut self, now: Time, _out: &mut Vec<Packet>) {
        self.deadline = Some(now + self.delay);
    }

    fn on_packet(&mut self, _now: Time, _from: Addr, _bytes: &[u8], _out: &mut Vec<Packet>) {}

    fn on_timers(&mut self, now: Time, _out: &mut Vec<Packet>) {
        self.wakes.borrow_mut().push((self.incarnation, now));
        if self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
        }
    }

    fn next_deadline(&self) -> Option<Time> {
        self.deadline
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// Datagrams as a [`Recorder`] received them, with their arrival times.
type Arrivals = Rc<RefCell<Vec<(Time, Vec<u8>)>>>;

/// A bare process that logs every datagram it receives, undecoded.
struct Recorder {
    addr: Addr,
    arrivals: Arrivals,
    counters: Counters,
}

impl Process for Recorder {
    fn addr(&self) -> Addr {
        self.addr
    }

    fn start(&mut self, _now: Time, _out: &mut Vec<Packet>) {}

    fn on_packet(&mut self, now: Time, _from: Addr, bytes: &[u8], _out: &mut Vec<Packet>) {
        self.arrivals.borrow_mut().push((now, bytes.to_vec()));
    }

    fn on_timers(&mut self, _now: Time, _out: &mut Vec<Packet>) {}

    fn next_deadline(&self) -> Option<Time> {
        None
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

// ---------------------------------------------------------------------------
// The journal: what every handler saw, in call order.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Start,
    Sent { to: Dest, msg: Msg },
    Received { from: Addr, msg: Msg },
    Fired(Timer),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    at: Time,
    node: Addr,
    event: Event,
}

/// Shared by the test and every node it builds.
#[derive(Clone, Debug, Default)]
struct Journal(Rc<RefCell<Vec<Entry>>>);

impl Journal {
    fn record<M, T: Copy + Eq + fmt::Debug>(&self, ctx: &Context<'_, M, T>, event: Event) {
        self.0.borrow_mut().push(Entry {
            at: ctx.now(),
            node: ctx.me(),
            event,
        });
    }

    fn entries(&self) -> Vec<Entry> {
        self.0.borrow().clone()
    }

    /// Everything `node` saw, in order.
    fn of(&self, node: Addr) -> Vec<(Time, Event)> {
        self.0
            .borrow()
            .iter()
            .filter(|e| e.node == node)
            .map(|e| (e.at, e.event.clone()))
            .collect()
    }

    fn sent(&self, node: Addr) -> Vec<(Time, Dest, Msg)> {
        self.of(node)
            .into_iter()
            .filter_map(|(at, event)| match event {
                Event::Sent { to, msg } => Some((at, to, msg)),
                _ => None,
            })
            .collect()
    }

    fn received(&self, node: Addr) -> Vec<(Time, Addr, Msg)> {
        self.of(node)
            .into_iter()
            .filter_map(|(at, event)| match event {
                Event::Received { from, msg } => Some((at, from, msg)),
                _ => None,
            })
            .collect()
    }

    fn fired(&self, node: Addr) -> Vec<(Time, Timer)> {
        self.of(node)
            .into_iter()
            .filter_map(|(at, event)| match event {
                Event::Fired(timer) => Some((at, timer)),
                _ => None,
            })
            .collect()
    }

    fn starts(&self, node: Addr) -> Vec<Time> {
        self.of(node)
            .into_iter()
            .filter_map(|(at, event)| (event == Event::Start).then_some(at))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

fn add_pinger(sim: &mut Simulator, addr: Addr, pings: Pings, journal: &Journal) {
    let journal = journal.clone();
    sim.add_node(
        addr,
        Box::new(move |rng| {
            let pinger = Pinger::new(pings, journal.clone());
            Box::new(Node::new(addr, pinger, Arc::new(Codec { me: addr }), rng))
        }),
    );
}

fn add_echo(sim: &mut Simulator, addr: Addr, pong_offset: u64, journal: &Journal) {
    let journal = journal.clone();
    sim.add_node(
        addr,
        Box::new(move |rng| {
            let echo = Echo {
                pong_offset,
                journal: journal.clone(),
            };
            Box::new(Node::new(addr, echo, Arc::new(Codec { me: addr }), rng))
        }),
    );
}

/// A client of the echo at R1.
fn add_echo_client(sim: &mut Simulator, addr: Addr, ops: u64, journal: &Journal) {
    let Addr::Client(id) = addr else {
        panic!("{addr} is not a client address");
    };
    let journal = journal.clone();
    sim.add_client(
        id,
        ops,
        Box::new(move |rng| {
            let client = EchoClient::new(R1, journal.clone());
            let node = Node::new(addr, client, Arc::new(Codec { me: addr }), rng);
            Box::new(ClientNode(node))
        }),
    );
}

/// A pinger at R0 sending `count` pings to an echo at R1 through `tamper`,
/// run to the end.
fn byzantine_pinger(seed: u64, tamper: Box<dyn Tamper>, count: u64) -> (Simulator, Journal) {
    let mut sim = Simulator::new(seed, Network::reliable());
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_pinger(&mut sim, R0, pings(Dest::To(R1), 1, count), &journal);
    sim.set_byzantine(R0, tamper);
    sim.run_until(at_ms(count + 100));
    (sim, journal)
}

/// Operations `c<client>-op<n>`, numbered from 1 per client.
fn numbered_ops() -> Workload {
    let mut issued: HashMap<ClientId, u64> = HashMap::new();
    Box::new(move |_: &mut Rng, client: ClientId| {
        let n = issued.entry(client).or_default();
        *n += 1;
        format!("c{}-op{n}", client.0).into_bytes()
    })
}

/// Everything a run can be compared on.
#[derive(Debug, PartialEq)]
struct Outcome {
    trace_hash: u64,
    history: Vec<Operation>,
    counters: Vec<(&'static str, u64)>,
    faults: FaultCounts,
    deliveries: u64,
    journal: Vec<Entry>,
}

/// Everything at once, under a faulty network: broadcast pings, two clients
/// with random operations, a Byzantine duplicator, noise, a crash and restart,
/// and a partition.
fn busy_run(seed: u64) -> Outcome {
    let mut sim = Simulator::new(seed, Network::faulty(0.1));
    sim.set_workload(
        Box::new(|rng: &mut Rng, client: ClientId| {
            format!("c{}-{}", client.0, rng.below(1_000_000)).into_bytes()
        }),
        Duration::from_millis(1),
    );
    let journal = Journal::default();
    add_echo(&mut sim, R1, 0, &journal);
    add_echo(&mut sim, R2, 0, &journal);
    add_pinger(&mut sim, R0, pings(Dest::Replicas, 2, 40), &journal);
    sim.set_byzantine(R0, Box::new(Byzantine::Duplicate { copies: 2 }));
    add_echo_client(&mut sim, C1, 10, &journal);
    add_echo_client(&mut sim, C2, 10, &journal);
    sim.add_node(
        OUTSIDER,
        Box::new(|rng| Box::new(Noise::new(OUTSIDER, R1, Duration::from_micros(700), rng))),
    );
    sim.schedule(at_ms(15), |sim| sim.crash(R2));
    sim.schedule(at_ms(25), |sim| sim.restart(R2));
    sim.schedule(at_ms(30), |sim| sim.partition(&[&[R0], &[R1, R2]]));
    sim.schedule(at_ms(35), Simulator::heal);
    assert!(sim.run_until_clients_done(at_ms(10_000)));
    sim.run_until(sim.now() + Duration::from_millis(100));
    Outcome {
        trace_hash: sim.trace_hash(),
        history: sim.history().to_vec(),
        counters: sim.counters().iter().collect(),
        faults: sim.faults(),
        deliveries: sim.deliveries(),
        journal: journal.entries(),
    }
}

/// When each message (by number) was sent.
fn send_times(sent: &[(Time, Dest, Msg)]) -> HashMap<u64, Time> {
    sent.iter().map(|(at, _, msg)| (seq_of(msg), *at)).collect()
}

/// How many times each number arrived.
fn seq_counts(received: &[(Time, Addr, Msg)]) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for (_, _, msg) in received {
        *counts.entry(seq_of(msg)).or_default() += 1;
    }
    counts
}

fn seq_of(msg: &Msg) -> u64 {
    match msg {
        Msg::Ping { seq } | Msg::Pong { seq } => *seq,
        Msg::Request { num, .. } | Msg::Reply { num, .. } => *num,
    }
}

fn decode_drops(counters: &Counters) -> u64 {
    counters
        .iter()
        .filter(|(name, _)| name.starts_with("decode:"))
        .map(|(_, n)| n)
        .sum()
}

fn at_ms(ms: u64) -> Time {
    Time::ZERO + Duration::from_millis(ms)
}

fn at_us(us: u64) -> Time {
    Time::ZERO + Duration::from_micros(us)
}

// ---------------------------------------------------------------------------
// The protocol-aware adversary.
// ---------------------------------------------------------------------------

/// The adversary rewrites fields of what it sends and signs the result again:
/// what leaves is well formed, correctly signed, and not what the node meant
/// to send. With replays on, old datagrams go out again beside the new ones.
#[test]
fn the_adversary_sends_well_formed_correctly_signed_lies() {
    use runtime::sim::{Adversary, Tactics};
    use wire::pbft::Prepare;
    use wire::{Digest, SecretKey, Signed, Signer};

    let secret = SecretKey::from_seed(b"byzantine");
    let signer = Signer::new(&secret).unwrap();
    let key = signer.public_key().parse().unwrap();
    let tactics = Tactics {
        mutate: 1.0,
        replay: 0.5,
        withhold: 0.0,
    };
    let mut adversary =
        Adversary::<Signed<Prepare>>::new(Some(Signer::new(&secret).unwrap()), 4, tactics);
    let mut rng = Rng::new(1);
    let (mut changed, mut replayed) = (0, 0);
    for seq in 1..=200 {
        let honest = Signed::sign(
            Prepare {
                view: 3,
                seq,
                digest: Digest::of(&seq.to_le_bytes()),
                replica: ReplicaId(2),
            },
            &signer,
        )
        .unwrap();
        let bytes = wire::codec::encode_to_vec(&honest).unwrap();
        let mut out = Vec::new();
        adversary.tamper(&mut rng, R1, bytes.clone(), &mut out);
        replayed += adversary.take_report().replayed;
        for (to, sent) in out {
            assert_eq!(to, R1);
            let lie: Signed<Prepare> = wire::decode(&sent).expect("well formed");
            lie.verify(&key).expect("correctly signed");
            changed += usize::from(lie.payload != honest.payload && lie.payload.seq == seq);
        }
    }
    assert!(changed > 100, "{changed} of 200 rewritten");
    assert!(replayed > 50, "{replayed} replays");
}
