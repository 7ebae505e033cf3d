import CoreMetrics
import Logging
import Synchronization

/// The stream workers of one responder process, in both delivery modes: `settings.workers`
/// loops, each holding at most one partition at a time and working its entries one after
/// another (so a user's updates keep their order and never run at once), and a heartbeat that
/// renews the partitions' leases and keeps the process in the fleet registry. The executable
/// runs each loop on a thread of its own, with its own connections.
///
/// Every process of every host registers in Redis once a heartbeat; each takes its share of
/// the partitions (``FleetView/share(of:)``: even, within its workers) and gives back what is
/// above it, so processes that join take over partitions from the others and those of a process
/// that stops (or dies: its registration and leases run out) are taken by the rest, first
/// claiming the entries it left pending. Idle, a process costs Redis one heartbeat and one
/// renewal round trip a second; it looks for free partitions (one read) only while it holds
/// fewer than its share.
public final class StreamWorkers: Sendable {
    private let settings: QueueSettings
    private let processor: UpdateProcessor
    private let clock: GatewayClock
    private let logger: Logger
    /// This process in the fleet registry; its name prefixes its workers' names.
    let member: FleetMember
    private let stopping = Atomic<Bool>(false)
    let leases: PartitionLeases
    /// How long a read waits for a new entry before the worker checks for a stop.
    public static let blockMilliseconds = 1_000
    /// New entries a worker reads at once (one round trip), then works one after another. Left
    /// unworked (a stop, a lost or released partition), they stay pending for the partition's
    /// next holder, which claims them before it reads anything new.
    public static let readCount = 8
    /// The worker loops to run: QUEUE_WORKERS, which a share never exceeds, and one more, so
    /// that streams a larger QUEUE_PARTITIONS left always have a worker to drain them (idle,
    /// without a Redis call, while there are none).
    public var loops: Int { settings.workers + 1 }

    /// `processes`: how many processes of this host start together (GATEWAY_PROCESSES). Until
    /// the registry has had a lease's time to list them all, the process takes no more than
    /// that many processes' share, so the first to start does not take every partition only to
    /// give most back a second later.
    public init(settings: QueueSettings, processes: Int, processor: UpdateProcessor, clock: GatewayClock, logger: Logger, prefix: String) {
        self.settings = settings
        self.processor = processor
        self.clock = clock
        self.logger = logger
        member = FleetMember(name: prefix, workers: settings.workers, partitions: settings.partitions)
        leases = PartitionLeases(
            leaseMilliseconds: settings.leaseMilliseconds, partitions: settings.partitions,
            share: (settings.partitions + max(1, processes) - 1) / max(1, processes))
    }

    /// Asks every loop to stop after the entry in hand; each releases its partition.
    public func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
    }

    public var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) }

    /// One worker's loop; returns after `stop()`, its partition released.
    public func runWorker(_ index: Int, partitions store: any PartitionStore, dependencies: ThreadDependencies) {
        let name = "\(member.name)-\(index)"
        var logger = logger
        logger[metadataKey: "worker"] = "\(index)"
        var current: Int?
        var drainPending = false
        var nextStaleLook: UInt64 = 0
        // Entries of the current partition read together and not worked yet.
        var unread: ArraySlice<StreamEntry> = []
        // The first unread entry's attempt, counted with the last entry's acknowledgement: that
        // entry is in hand, worked before a stop or a release (neither asks for one).
        var counted: Int?
        while !isStopping || counted != nil {
            guard let partition = current else {
                // At its share, the process's other workers stand by (the heartbeat raises the
                // share when a process leaves the fleet) or drain retiring streams.
                guard let look = leases.beginAcquiring() else {
                    pause(milliseconds: 1_000)
                    continue
                }
                current = acquire(name, look: look, store: store, logger: logger)
                leases.endAcquiring(look)
                drainPending = true
                // While nothing is free, the workers' next looks are spread over a second, so
                // that the one look a second the process makes is not made by all of them at once.
                if current == nil {
                    pause(milliseconds: leases.nothingFree(look, at: clock.now()) ? 1_000 + Int64.random(in: 0..<1_000) : 1_000)
                }
                continue
            }
            guard leases.holds(name, renewingIn: store, clock: clock) else {
                logger.warning("partition lease lost; leaving it", metadata: ["partition": .stringConvertible(partition)])
                leases.forget(name)
                current = nil
                unread = []
                counted = nil
                continue
            }
            if counted == nil, leases.mustRelease(name) {
                // Above the process's share: between two entries, so none is cut short (those
                // read and not worked are claimed by the next holder).
                release(partition, of: name, store: store)
                unread = []
                logger.debug("partition handed back to the fleet", metadata: ["partition": .stringConvertible(partition)])
                current = nil
                continue
            }
            do throws(StateStoreError) {
                let attempt = counted
                var entry = counted == nil ? nil : unread.popFirst()
                counted = nil
                if entry == nil, drainPending {
                    entry = try store.claimPending(partition: partition, worker: name, idleMilliseconds: 0)
                    drainPending = entry != nil
                }
                // Only with nothing read and unworked here: those are pending too.
                if entry == nil, unread.isEmpty, clock.now() >= nextStaleLook {
                    // A worker whose lease had run out (on Redis's clock) may still have read
                    // entries after this one drained the partition, and left them pending: once a
                    // lease long, they are this worker's. One look a lease while it finds none.
                    entry = try store.claimPending(partition: partition, worker: name, idleMilliseconds: settings.leaseMilliseconds)
                    nextStaleLook = entry == nil ? clock.now() + UInt64(settings.leaseMilliseconds) * 1_000_000 : 0
                }
                if entry == nil, unread.isEmpty {
                    unread = try store.readNew(
                        partition: partition, worker: name, count: Self.readCount, blockMilliseconds: Self.blockMilliseconds)[...]
                }
                if entry == nil { entry = unread.popFirst() }
                if let entry {
                    let leases = leases
                    let clock = clock
                    let done = try work(entry, attempt: attempt, store: store, dependencies: dependencies, logger: logger) {
                        leases.holds(name, renewingIn: store, clock: clock)
                    }
                    if done {
                        // The acknowledgement takes the next entry in the same round trip: counts
                        // the first attempt at the next one read, or reads the partition's new
                        // ones (unless pending entries are claimed first, or a look for stale
                        // ones is due).
                        if isStopping || leases.mustRelease(name) {
                            try store.acknowledge(entry)
                        } else if let following = unread.first {
                            counted = try store.acknowledge(entry, countingAttemptAt: following)
                        } else if !drainPending, clock.now() < nextStaleLook {
                            let taken = try store.acknowledge(entry, readingNewFor: name, count: Self.readCount)
                            unread = taken.entries[...]
                            counted = taken.entries.isEmpty ? nil : taken.firstAttempt
                        } else {
                            try store.acknowledge(entry)
                        }
                    }
                } else if partition >= leases.partitionsInUse {
                    // A retiring stream drained: free the worker for another.
                    release(partition, of: name, store: store)
                    current = nil
                }
            } catch {
                logger.warning("stream read failed; retrying", metadata: [LogKey.error: "\(error)", "partition": .stringConvertible(partition)])
                // The entry in hand and those read after it are pending: claimed again, in order.
                drainPending = true
                unread = []
                counted = nil
                pause(milliseconds: 1_000)
            }
        }
        if let current { release(current, of: name, store: store) }
    }

    /// Gives `worker`'s partition back: forgotten first, so the heartbeat cannot renew what is
    /// released next.
    private func release(_ partition: Int, of worker: String, store: any PartitionStore) {
        leases.forget(worker)
        store.releaseLease(partition: partition, worker: worker)
    }

    /// Every second (every third of a shorter lease) until the workers are done: renews the
    /// lease of every partition this process holds (a renewal never takes a free partition),
    /// keeps the process in the fleet and sets its share from what the fleet looks like now.
    /// Once stopping, takes the process out of the fleet (the others raise their shares) and
    /// renews what the workers still hold until they are done.
    public func runHeartbeat(partitions store: any PartitionStore, until workersDone: () -> Bool) {
        let interval = UInt64(min(settings.leaseMilliseconds / 3, 1_000)) * 1_000_000
        let started = clock.now()
        var next: UInt64 = 0
        var left = false
        while !workersDone() {
            if clock.now() >= next {
                let beat = clock.now()
                leases.renewAll(store: store, clock: clock)
                let renewed = clock.now()
                if renewed > beat + interval {
                    // Late renewals lose leases: say why workers leave their partitions.
                    logger.warning("partition lease renewal slow", metadata: ["renewal_ms": .stringConvertible((renewed - beat) / 1_000_000)])
                }
                if !isStopping {
                    joinFleet(store: store, starting: clock.now() < started + UInt64(settings.leaseMilliseconds) * 1_000_000)
                } else if !left {
                    store.leaveFleet(member)
                    left = true
                }
                next = clock.now() + interval
            }
            clock.sleep(min(interval, 100_000_000))
        }
        if !left { store.leaveFleet(member) }
    }

    /// One heartbeat in the registry: the share from the fleet as it is now (the last one stays
    /// while Redis does not answer); the partitions above it marked for release; and, by the
    /// first process in the registry, streams above every live QUEUE_PARTITIONS retired once
    /// drained. `starting`: within the process's first lease.
    func joinFleet(store: any PartitionStore, starting: Bool) {
        guard let fleet = try? store.joinFleet(member, milliseconds: settings.leaseMilliseconds) else { return }
        var share = fleet.share(of: member.name)
        if starting { share = min(share, leases.startingShare) }
        let partitions = max(fleet.partitions, settings.partitions)
        let inUse = max(fleet.partitionsInUse, settings.partitions)
        if leases.update(share: share, partitions: partitions, inUse: inUse, processes: fleet.members.count) {
            logger.info(
                "fleet changed",
                metadata: [
                    "processes": .stringConvertible(fleet.members.count), "share": .stringConvertible(share),
                    "partitions": .stringConvertible(inUse), "retiring": .stringConvertible(partitions - inUse),
                ])
        }
        if fleet.partitions > inUse, fleet.members.map(\.name).min() == member.name,
            (try? store.retirePartitions(from: fleet.partitions, to: inUse)) == true
        {
            logger.info(
                "retired partitions drained",
                metadata: ["from": .stringConvertible(fleet.partitions), "to": .stringConvertible(inUse)])
        }
    }

    /// Works one entry to its end: done (true: the caller acknowledges it), dead-lettered, or
    /// left pending at a stop or a lost lease (the next holder claims it). `attempt`: the first
    /// attempt's number, when it was counted already. Failed attempts wait 1, 2, 4… s (at most
    /// 30) in place, so the partition's later entries keep waiting behind it.
    private func work(
        _ entry: StreamEntry, attempt counted: Int? = nil, store: any PartitionStore, dependencies: ThreadDependencies, logger: Logger,
        holds: @escaping () -> Bool
    ) throws(StateStoreError) -> Bool {
        var counted = counted
        // The attempt about to be made, counted before it is.
        func count() throws(StateStoreError) -> Int {
            guard let attempt = counted else { return try store.countAttempt(entry) }
            counted = nil
            return attempt
        }
        let clock = clock
        let context = {
            UpdateContext(
                requestID: "q\(entry.partition)-\(entry.id)", logger: logger,
                deadline: .after(seconds: self.processor.settings.deadlineSeconds, from: clock.now()), mayWait: true, clock: clock,
                holdsPartition: holds)
        }
        switch entry.content {
        case .unreadable:
            logger.warning(
                "stream entry this version cannot read; dropped",
                metadata: ["entry": "\(entry.id)", "partition": .stringConvertible(entry.partition)])
            return true
        case .outbox(let subject):
            switch processor.drainOutbox(of: subject, dependencies: dependencies, context: context()) {
            case .empty:
                return true
            case .left(let milliseconds):
                // The rest waits its turn behind the partition's other entries: a short pause at
                // most, so other users' entries are not held up by one user's window.
                pause(milliseconds: min(milliseconds, UpdateProcessor.workerPatienceMilliseconds))
                guard !isStopping, holds() else { return false }
                guard let queue = dependencies.queue else { throw .unavailable }
                try queue.scheduleOutbox(of: subject, deadline: context().deadline)
                return true
            case .storeFailed:
                throw .unavailable
            }
        case .job(let id):
            while true {
                switch processor.fanOut(id, dependencies: dependencies, context: context()) {
                case .done, .gone:
                    return true
                case .retry(let reason):
                    logger.warning("outbound fan-out interrupted; resuming from its cursor", metadata: ["job": "\(id)", LogKey.reason: "\(reason)"])
                    pause(milliseconds: 1000)
                }
                if isStopping || !holds() { return false }
            }
        case .delivery(let send):
            while true {
                let attempt = try count()
                switch processor.sendPaced(send, slot: UpdateProcessor.slot(of: send), dependencies: dependencies, context: context()) {
                case .sent, .refused:
                    return true
                case .failed(let error) where attempt >= settings.maxAttempts:
                    try deadLetter(entry, reason: "bot_api_\(error.shortDescription)", attempts: attempt, store: store, logger: logger)
                    return false
                case .failed, .notNow:
                    pause(milliseconds: UpdateProcessor.backoffMilliseconds(attempt: attempt))
                    if isStopping || !holds() { return false }
                }
            }
        case .update(let body, let answered, let replay):
            while true {
                let attempt = try count()
                if attempt > settings.maxAttempts {
                    // Attempts that never reported back (the worker died in them) count too.
                    try deadLetter(entry, reason: "attempts_exhausted", attempts: attempt - 1, store: store, logger: logger)
                    processor.forget(stored: body, with: dependencies, context: context())
                    return false
                }
                let result = processor.process(
                    stored: body, callbackAnswered: answered, replay: replay, attempt: attempt, isLastAttempt: attempt >= settings.maxAttempts,
                    with: dependencies, context: context())
                switch result {
                case .done:
                    Counter(label: GatewayMetric.queueProcessed).increment()
                    return true
                case .deadLetter(let reason):
                    try deadLetter(entry, reason: reason, attempts: attempt, store: store, logger: logger)
                    return false
                case .retry:
                    pause(milliseconds: UpdateProcessor.backoffMilliseconds(attempt: attempt))
                }
                // Stopping, or the partition went to another worker: leave the entry pending for its next holder.
                if isStopping || !holds() { return false }
            }
        }
    }

    /// Works one entry as a worker holding its partition would: for tests that play the
    /// worker's loop themselves. Returns "done", or the error that would make the loop retry.
    func workOnce(_ entry: StreamEntry, store: any PartitionStore, dependencies: ThreadDependencies, logger: Logger) -> String {
        do {
            if try work(entry, store: store, dependencies: dependencies, logger: logger, holds: { true }) { try store.acknowledge(entry) }
            return "done"
        } catch {
            return "error: \(error)"
        }
    }

    private func deadLetter(
        _ entry: StreamEntry, reason: String, attempts: Int, store: any PartitionStore, logger: Logger
    ) throws(StateStoreError) {
        try store.deadLetter(entry, reason: reason, attempts: attempts, limit: settings.deadLetterLimit)
        Counter(label: GatewayMetric.queueDeadLetters, dimensions: [("reason", reason)]).increment()
        logger.error(
            "queue entry dead-lettered",
            metadata: ["partition": .stringConvertible(entry.partition), "entry": "\(entry.id)", LogKey.reason: "\(reason)"])
    }

    /// Takes a free partition: one of the partitions in use for the process's share, a retiring
    /// stream that still holds entries beyond it. Which are free is read in one round trip and
    /// kept for the process's workers, which try them in random order, each its own; the list
    /// is read again when it runs out or is a second old. When nothing was free, the process's
    /// workers do not look again for a second. (Read by every worker, 400 workers starting
    /// together read 800 owners each, and the renewals waiting behind them ran late.)
    private func acquire(_ name: String, look: PartitionLeases.Look, store: any PartitionStore, logger: Logger) -> Int? {
        let range = look == .share ? 0..<leases.partitionsInUse : leases.partitionsInUse..<leases.partitionCount
        guard !range.isEmpty else { return nil }
        var reads = 0
        while !isStopping, !leases.nothingFree(look, at: clock.now()) {
            guard let partition = leases.nextCandidate(look, in: range, at: clock.now()) else {
                // Two reads at most: the second after every candidate of the first was taken meanwhile.
                guard reads < 2 else { return nil }
                reads += 1
                // A failed read leaves every partition to try.
                let free = (try? store.freePartitions(range, withEntries: look == .retiring)) ?? Array(range)
                if free.isEmpty { leases.noteNothingFree(look, until: clock.now() + 1_000_000_000) }
                leases.setCandidates(free, look, at: clock.now())
                continue
            }
            let sentAt = clock.now()
            guard (try? store.takeLease(partition: partition, worker: name, milliseconds: settings.leaseMilliseconds)) == true else { continue }
            do {
                try store.prepare(partition: partition)
            } catch {
                store.releaseLease(partition: partition, worker: name)
                return nil
            }
            leases.record(name, partition: partition, since: sentAt)
            logger.debug("partition taken", metadata: ["partition": .stringConvertible(partition)])
            return partition
        }
        return nil
    }

    /// Sleeps up to `milliseconds`, waking early for a stop.
    private func pause(milliseconds: Int64) {
        var left = max(0, milliseconds)
        while left > 0, !isStopping {
            let slice = min(left, 100)
            clock.sleep(UInt64(slice) * 1_000_000)
            left -= slice
        }
    }
}
