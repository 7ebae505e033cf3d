import CoreMetrics
import Logging
import Synchronization

/// The stream workers of one responder process, in both delivery modes: `settings.workers`
/// loops, each holding at most one partition at a time and working its entries one after
/// another (so a user's updates keep their order and never run at once), and a heartbeat that
/// renews the partitions' leases. The executable runs each loop on a thread of its own, with
/// its own connections.
///
/// A worker takes any free partition; when a process dies its leases run out and standing-by
/// workers (of any process, on any host) take the partitions over, first claiming the entries
/// the dead worker left pending.
public final class StreamWorkers: Sendable {
    private let settings: QueueSettings
    private let processor: UpdateProcessor
    private let clock: GatewayClock
    private let logger: Logger
    /// Names this process's workers: host, pid and a random part.
    private let prefix: String
    /// Partitions this process takes at once; workers beyond it look for free partitions only
    /// once a lease, so the processes started together share them and the rest stand by.
    private let share: Int
    private let stopping = Atomic<Bool>(false)
    let leases: PartitionLeases
    /// How long a read waits for a new entry before the worker checks for a stop.
    public static let blockMilliseconds = 1_000

    /// `processes`: how many processes share the partitions (GATEWAY_PROCESSES).
    public init(settings: QueueSettings, processes: Int, processor: UpdateProcessor, clock: GatewayClock, logger: Logger, prefix: String) {
        self.settings = settings
        self.processor = processor
        self.clock = clock
        self.logger = logger
        self.prefix = prefix
        share = (settings.partitions + max(1, processes) - 1) / max(1, processes)
        leases = PartitionLeases(leaseMilliseconds: settings.leaseMilliseconds)
    }

    /// Asks every loop to stop after the entry in hand; each releases its partition.
    public func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
    }

    public var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) }

    /// One worker's loop; returns after `stop()`, its partition released.
    public func runWorker(_ index: Int, partitions store: any PartitionStore, dependencies: ThreadDependencies) {
        let name = "\(prefix)-\(index)"
        var logger = logger
        logger[metadataKey: "worker"] = "\(index)"
        var current: Int?
        var drainPending = false
        while !isStopping {
            guard let partition = current else {
                let withinShare = leases.beginAcquiring(share: share)
                // Standing by: look for a free partition once a lease, after the other processes.
                if !withinShare { pause(milliseconds: settings.leaseMilliseconds) }
                current = acquire(name, everywhere: withinShare, store: store, logger: logger)
                if withinShare { leases.endAcquiring() }
                drainPending = true
                // While every partition is held, the workers' next looks are spread over a
                // second, so that the one look a second the process makes is not made by all
                // of them at once.
                if current == nil { pause(milliseconds: leases.nothingFree(at: clock.now()) ? 1_000 + Int64.random(in: 0..<1_000) : 1_000) }
                continue
            }
            guard leases.holds(name, at: clock.now()) else {
                logger.warning("partition lease lost; leaving it", metadata: ["partition": .stringConvertible(partition)])
                leases.forget(name)
                current = nil
                continue
            }
            do throws(StateStoreError) {
                var entry: StreamEntry?
                if drainPending {
                    entry = try store.claimPending(partition: partition, worker: name)
                    drainPending = entry != nil
                }
                if entry == nil { entry = try store.readNew(partition: partition, worker: name, blockMilliseconds: Self.blockMilliseconds) }
                if let entry {
                    let leases = leases
                    let clock = clock
                    try work(entry, store: store, dependencies: dependencies, logger: logger) { leases.holds(name, at: clock.now()) }
                }
            } catch {
                logger.warning("stream read failed; retrying", metadata: [LogKey.error: "\(error)", "partition": .stringConvertible(partition)])
                drainPending = true
                pause(milliseconds: 1_000)
            }
        }
        if let current {
            // Forgotten first, so the heartbeat cannot renew what is released next.
            leases.forget(name)
            store.releaseLease(partition: current, worker: name)
        }
    }

    /// Renews the lease of every partition this process holds, every second (every third of a
    /// shorter lease), until the workers are done. A renewal never takes a free partition.
    public func runHeartbeat(partitions store: any PartitionStore, until workersDone: () -> Bool) {
        let interval = UInt64(min(settings.leaseMilliseconds / 3, 1_000)) * 1_000_000
        var next: UInt64 = 0
        while !workersDone() {
            if clock.now() >= next {
                leases.renewAll(store: store, clock: clock)
                next = clock.now() + interval
            }
            clock.sleep(min(interval, 100_000_000))
        }
    }

    /// Works one entry to its end: acknowledged, dead-lettered, or left pending at a stop or a
    /// lost lease (the next holder claims it). Failed attempts wait 1, 2, 4… s (at most 30) in
    /// place, so the partition's later entries keep waiting behind it.
    private func work(
        _ entry: StreamEntry, store: any PartitionStore, dependencies: ThreadDependencies, logger: Logger, holds: @escaping @Sendable () -> Bool
    ) throws(StateStoreError) {
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
            try store.acknowledge(entry)
        case .outbox(let subject):
            switch processor.drainOutbox(of: subject, dependencies: dependencies, context: context()) {
            case .empty:
                try store.acknowledge(entry)
            case .left(let milliseconds):
                // The rest waits its turn behind the partition's other entries: a short pause at
                // most, so other users' entries are not held up by one user's window.
                pause(milliseconds: min(milliseconds, UpdateProcessor.workerPatienceMilliseconds))
                guard !isStopping, holds() else { return }
                guard let queue = dependencies.queue else { throw .unavailable }
                try queue.scheduleOutbox(of: subject, deadline: context().deadline)
                try store.acknowledge(entry)
            case .storeFailed:
                throw .unavailable
            }
        case .job(let id):
            while true {
                switch processor.fanOut(id, dependencies: dependencies, context: context()) {
                case .done, .gone:
                    try store.acknowledge(entry)
                    return
                case .retry(let reason):
                    logger.warning("outbound fan-out interrupted; resuming from its cursor", metadata: ["job": "\(id)", LogKey.reason: "\(reason)"])
                    pause(milliseconds: 1000)
                }
                if isStopping || !holds() { return }
            }
        case .delivery(let send):
            while true {
                let attempt = try store.countAttempt(entry)
                switch processor.sendPaced(send, slot: UpdateProcessor.slot(of: send), dependencies: dependencies, context: context()) {
                case .sent, .refused:
                    try store.acknowledge(entry)
                    return
                case .failed(let error) where attempt >= settings.maxAttempts:
                    try deadLetter(entry, reason: "bot_api_\(error.shortDescription)", attempts: attempt, store: store, logger: logger)
                    return
                case .failed, .notNow:
                    pause(milliseconds: UpdateProcessor.backoffMilliseconds(attempt: attempt))
                    if isStopping || !holds() { return }
                }
            }
        case .update(let body, let answered, let replay):
            while true {
                let attempt = try store.countAttempt(entry)
                if attempt > settings.maxAttempts {
                    // Attempts that never reported back (the worker died in them) count too.
                    try deadLetter(entry, reason: "attempts_exhausted", attempts: attempt - 1, store: store, logger: logger)
                    processor.forget(stored: body, with: dependencies, context: context())
                    return
                }
                let result = processor.process(
                    stored: body, callbackAnswered: answered, replay: replay, attempt: attempt, isLastAttempt: attempt >= settings.maxAttempts,
                    with: dependencies, context: context())
                switch result {
                case .done:
                    try store.acknowledge(entry)
                    Counter(label: GatewayMetric.queueProcessed).increment()
                    return
                case .deadLetter(let reason):
                    try deadLetter(entry, reason: reason, attempts: attempt, store: store, logger: logger)
                    return
                case .retry:
                    pause(milliseconds: UpdateProcessor.backoffMilliseconds(attempt: attempt))
                }
                // Stopping, or the partition went to another worker: leave the entry pending for its next holder.
                if isStopping || !holds() { return }
            }
        }
    }

    /// Works one entry as a worker holding its partition would: for tests that play the
    /// worker's loop themselves. Returns "done", or the error that would make the loop retry.
    func workOnce(_ entry: StreamEntry, store: any PartitionStore, dependencies: ThreadDependencies, logger: Logger) -> String {
        do {
            try work(entry, store: store, dependencies: dependencies, logger: logger) { true }
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

    /// Takes the first free partition from a random starting point: looking at every partition
    /// when taking this process's share (so none is left without a worker), at 16 when standing
    /// by. Which partitions are free is read first, in one round trip, and only those are
    /// tried; when none was free, the process's other workers do not look again for a second.
    /// So a process whose workers find every partition held (several hosts, or more processes
    /// than `GATEWAY_PROCESSES` says) costs Redis one pipelined read a second, not a lease
    /// script per worker per partition per second.
    private func acquire(_ name: String, everywhere: Bool, store: any PartitionStore, logger: Logger) -> Int? {
        let count = max(1, settings.partitions)
        guard !leases.nothingFree(at: clock.now()) else { return nil }
        // A failed read leaves every partition to try, as before.
        let free = (try? store.freePartitions(count: count)) ?? Array(0..<count)
        guard !free.isEmpty else {
            leases.noteNothingFree(until: clock.now() + 1_000_000_000)
            return nil
        }
        let start = Int.random(in: 0..<free.count)
        for step in 0..<(everywhere ? free.count : min(16, free.count)) where !isStopping {
            let partition = free[(start + step) % free.count]
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

/// The partitions a process's workers hold, and until when each lease is surely still theirs:
/// the time its last renewal was sent plus the lease, less a margin. A worker whose renewals
/// fail (Redis unreachable from here) is told it lost the partition before the lease can
/// expire in Redis, so another worker never takes over while it still acts.
final class PartitionLeases: Sendable {
    private struct Held {
        var partition: Int
        var validUntil: UInt64
    }

    private let state = Locked<(held: [String: Held], acquiring: Int, nothingFreeUntil: UInt64)>(([:], 0, 0))
    private let leaseNanoseconds: UInt64
    private let marginNanoseconds: UInt64

    init(leaseMilliseconds: Int64) {
        leaseNanoseconds = UInt64(max(1, leaseMilliseconds)) * 1_000_000
        marginNanoseconds = max(leaseNanoseconds / 10, min(250_000_000, leaseNanoseconds / 2))
    }

    func holds(_ worker: String, at now: UInt64) -> Bool {
        state.withLock { state in state.held[worker].map { now < $0.validUntil } ?? false }
    }

    /// `worker` took `partition` with a lease sent at `sentAt`.
    func record(_ worker: String, partition: Int, since sentAt: UInt64) {
        state.withLock { $0.held[worker] = Held(partition: partition, validUntil: sentAt + leaseNanoseconds - marginNanoseconds) }
    }

    func forget(_ worker: String) {
        _ = state.withLock { $0.held.removeValue(forKey: worker) }
    }

    /// Whether a worker may look for a partition now, as part of this process's share.
    func beginAcquiring(share: Int) -> Bool {
        state.withLock { state in
            guard state.held.count + state.acquiring < share else { return false }
            state.acquiring += 1
            return true
        }
    }

    func endAcquiring() {
        state.withLock { $0.acquiring -= 1 }
    }

    /// Whether a worker of this process found every partition held a moment ago.
    func nothingFree(at now: UInt64) -> Bool {
        state.withLock { now < $0.nothingFreeUntil }
    }

    func noteNothingFree(until time: UInt64) {
        state.withLock { $0.nothingFreeUntil = time }
    }

    /// Renews every lease held now, in one round trip; a renewal that finds the lease gone
    /// drops it at once, one that fails leaves it to lapse. (Renewed one by one, the 400
    /// partitions of a busy process took longer than a short lease, and its workers gave them up.)
    func renewAll(store: any PartitionStore, clock: GatewayClock) {
        let held = state.withLock { state in state.held.map { (worker: $0.key, partition: $0.value.partition) } }
        guard !held.isEmpty else { return }
        let sentAt = clock.now()
        let renewed = try? store.renewLeases(held.map { ($0.partition, $0.worker) }, milliseconds: Int64(leaseNanoseconds / 1_000_000))
        guard let renewed, renewed.count == held.count else { return }
        state.withLock { state in
            for (holding, isOurs) in zip(held, renewed) {
                // Only the same holding: the worker may have let it go meanwhile.
                guard let current = state.held[holding.worker], current.partition == holding.partition else { continue }
                state.held[holding.worker]?.validUntil = isOurs ? sentAt + leaseNanoseconds - marginNanoseconds : 0
            }
        }
    }
}
