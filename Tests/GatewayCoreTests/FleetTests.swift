import GatewayTestSupport
import Testing

@testable import GatewayCore

/// The fleet registry: how processes of every host share the partitions, hand them over as
/// processes join and leave, and retire streams a larger QUEUE_PARTITIONS left behind.
@Suite struct FleetTests {
    private func members(_ workers: [Int], partitions: Int = 16) -> [FleetMember] {
        workers.enumerated().map { FleetMember(name: "p\($0.offset)", workers: $0.element, partitions: partitions) }
    }

    @Test func sharesAreEvenWithinEachProcesssWorkersAndAddUpToThePartitions() {
        let cases: [(workers: [Int], partitions: Int, shares: [Int])] = [
            ([16], 16, [16]),
            ([16, 16], 16, [8, 8]),
            ([16, 16, 16], 16, [5, 5, 6]),
            ([2, 16, 16], 16, [2, 7, 7]),
            ([4, 4, 4, 4], 16, [4, 4, 4, 4]),
            ([16, 16, 16, 16, 16], 3, [0, 0, 1, 1, 1]),
            ([2, 2], 16, [2, 2]),  // too few workers: the rest stays unowned (the configuration check refuses it per host)
        ]
        for (workers, partitions, shares) in cases {
            let view = FleetView(members: members(workers, partitions: partitions), partitions: partitions)
            let computed = view.members.map { view.share(of: $0.name) }
            #expect(computed.sorted() == shares.sorted(), "\(workers) over \(partitions)")
            #expect(computed.reduce(0, +) == min(partitions, workers.reduce(0, +)))
        }
        #expect(FleetView(members: members([16]), partitions: 16).share(of: "elsewhere") == 0)
    }

    @Test func aMemberSurvivesItsRegistryEncodingAndOddTextIsSkipped() {
        let member = FleetMember(name: "host-a-123-x9", workers: 16, partitions: 64)
        #expect(FleetMember(encoded: member.encoded) == member)
        for odd in ["", "a", "a b c", "a 1", "a -1 16", "a 16 0", "a 16 16 16"] { #expect(FleetMember(encoded: odd) == nil, "\(odd)") }
    }

    private struct Process {
        let workers: StreamWorkers
        init(_ name: String, partitions: Int = 16, clock: ManualClock) {
            let gateway = TestGateway()
            var settings = gateway.processor.settings.queue
            settings.partitions = partitions
            settings.workers = 16
            workers = StreamWorkers(
                settings: settings, processes: 1, processor: gateway.processor, clock: clock.gatewayClock, logger: gateway.log.logger(),
                prefix: name)
        }

        /// Takes partitions as its workers would, up to its share.
        func take(_ partitions: Range<Int>, from streams: InMemoryStreams, clock: ManualClock) {
            for partition in partitions {
                let worker = "\(workers.member.name)-\(partition)"
                guard (try? streams.takeLease(partition: partition, worker: worker, milliseconds: 5_000)) == true else { continue }
                workers.leases.record(worker, partition: partition, since: clock.now)
            }
        }

        func releasing(_ partitions: Range<Int>) -> [Int] {
            partitions.filter { workers.leases.mustRelease("\(workers.member.name)-\($0)") }
        }
    }

    @Test func aProcessJoiningTakesHalfAndOneLeavingHandsItsShareBack() {
        let clock = ManualClock()
        let streams = InMemoryStreams(settings: QueueSettings(partitions: 16), clock: clock)
        let first = Process("host-a-1", clock: clock)
        first.workers.joinFleet(store: streams, starting: false)
        #expect(first.workers.leases.share == 16)
        first.take(0..<16, from: streams, clock: clock)
        #expect(first.releasing(0..<16).isEmpty)

        let second = Process("host-b-2", clock: clock)
        second.workers.joinFleet(store: streams, starting: false)
        #expect(second.workers.leases.share == 8)
        first.workers.joinFleet(store: streams, starting: false)
        #expect(first.workers.leases.share == 8)
        #expect(first.releasing(0..<16).count == 8, "the surplus is handed back, between entries")

        // The second process stops: out of the registry at once, the first's share is all again.
        streams.leaveFleet(second.workers.member)
        first.workers.joinFleet(store: streams, starting: false)
        #expect(first.workers.leases.share == 16)
    }

    @Test func aDeadProcessLeavesTheRegistryWhenItsRegistrationRunsOut() {
        let clock = ManualClock()
        let streams = InMemoryStreams(settings: QueueSettings(partitions: 16), clock: clock)
        let survivor = Process("host-a-1", clock: clock)
        let dead = Process("host-b-2", clock: clock)
        dead.workers.joinFleet(store: streams, starting: false)
        survivor.workers.joinFleet(store: streams, starting: false)
        #expect(survivor.workers.leases.share == 8)
        clock.advance(milliseconds: 4_000)
        survivor.workers.joinFleet(store: streams, starting: false)
        #expect(survivor.workers.leases.share == 8, "within the lease the dead process still counts")
        clock.advance(milliseconds: 1_001)
        survivor.workers.joinFleet(store: streams, starting: false)
        #expect(survivor.workers.leases.share == 16)
    }

    @Test func aProcessStartingAloneTakesNoMoreThanItsHostsProcessesShareForItsFirstLease() {
        let clock = ManualClock()
        let streams = InMemoryStreams(settings: QueueSettings(partitions: 16), clock: clock)
        let gateway = TestGateway()
        let workers = StreamWorkers(
            settings: QueueSettings(partitions: 16), processes: 2, processor: gateway.processor, clock: clock.gatewayClock,
            logger: gateway.log.logger(), prefix: "host-a-1")
        workers.joinFleet(store: streams, starting: true)
        #expect(workers.leases.share == 8, "its sibling is about to register")
        workers.joinFleet(store: streams, starting: false)
        #expect(workers.leases.share == 16, "alone after a lease: everything")
    }

    @Test func streamsALargerCountLeftAreDrainedThenRetired() {
        let clock = ManualClock()
        let streams = InMemoryStreams(settings: QueueSettings(partitions: 4), clock: clock)
        let old = Process("host-a-1", partitions: 16, clock: clock)
        old.workers.joinFleet(store: streams, starting: false)
        streams.append(.outbox(.user(9)), to: 9)
        streams.leaveFleet(old.workers.member)

        // QUEUE_PARTITIONS lowered to 4: the new process still works all 16 while 9 waits.
        let new = Process("host-a-2", partitions: 4, clock: clock)
        new.workers.joinFleet(store: streams, starting: false)
        #expect(new.workers.leases.partitionCount == 16)
        #expect(new.workers.leases.partitionsInUse == 4)
        #expect(new.workers.leases.share == 4, "the partitions in use are shared; the retiring ones go to the workers beyond")
        new.take(0..<4, from: streams, clock: clock)
        #expect(new.workers.leases.beginAcquiring() == .retiring)
        new.workers.leases.endAcquiring(.retiring)
        #expect((try? streams.freePartitions(4..<16, withEntries: true)) == [9], "only a retiring stream with entries is worth taking")
        #expect(streams.fleetPartitions == 16)
        #expect((try? streams.backlog(deadline: .distantFuture))?.retiringEntries == 1)

        new.take(9..<10, from: streams, clock: clock)
        let entry = try? streams.readNew(partition: 9, worker: "host-a-2-9", count: StreamWorkers.readCount, blockMilliseconds: 0).first
        #expect(entry != nil)
        if let entry { try? streams.acknowledge(entry) }
        new.workers.joinFleet(store: streams, starting: false)
        #expect(streams.fleetPartitions == 4, "drained: retired")
        new.workers.joinFleet(store: streams, starting: false)
        #expect(new.workers.leases.partitionCount == 4)
        #expect(new.releasing(9..<10) == [9], "the worker on a retired stream lets it go")
        #expect(new.workers.leases.beginAcquiring() == nil, "at its share with nothing retiring: standing by")
    }

    @Test func aLiveProcessWithTheLargerCountKeepsItsStreamsInUse() {
        let clock = ManualClock()
        let streams = InMemoryStreams(settings: QueueSettings(partitions: 4), clock: clock)
        let old = Process("host-a-1", partitions: 16, clock: clock)
        let new = Process("host-b-2", partitions: 4, clock: clock)
        old.workers.joinFleet(store: streams, starting: false)
        new.workers.joinFleet(store: streams, starting: false)
        #expect((try? streams.retirePartitions(from: 16, to: 4)) == false, "host a still stores in 4..<16")
        #expect(streams.fleetPartitions == 16)
        #expect(new.workers.leases.partitionCount == 16)
    }
}
