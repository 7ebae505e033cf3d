import CoreMetrics
import GatewayCore
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Queue mode's workers in one responder process: `settings.workers` loops, each holding at most
/// one partition at a time and working its entries one after another (so a user's updates keep
/// their order and never run at once), plus a heartbeat that renews the partitions' leases.
///
/// A worker takes any free partition; when a process dies its leases run out and standing-by
/// workers (of any process, on any host) take the partitions over, first claiming the entries
/// the dead worker left pending (`XAUTOCLAIM`).
public final class QueueWorkers: Sendable {
    private let settings: QueueSettings
    private let redis: GatewayConfig.RedisSettings
    private let handler: WebhookHandler
    private let makeDependencies: @Sendable () -> ThreadDependencies
    private let logger: Logger
    private let clock: @Sendable () -> UInt64
    private let stopping = Atomic<Bool>(false)
    /// Partition held by each worker (by name), for the heartbeat; workers whose lease was lost.
    private let held = Locked<(partitions: [String: Int], lost: Set<String>, acquiring: Int)>(([:], [], 0))
    private let prefix: String
    /// Partitions this process takes at once; workers beyond it look for free partitions only
    /// once a lease, so the processes started together share them and the rest stand by.
    private let share: Int
    /// How long a read waits for a new entry before the worker checks for a stop.
    static let blockMilliseconds = 1_000

    /// `processes`: how many processes share the partitions (GATEWAY_PROCESSES).
    public init(
        settings: QueueSettings, processes: Int, redis: GatewayConfig.RedisSettings, handler: WebhookHandler,
        makeDependencies: @escaping @Sendable () -> ThreadDependencies, logger: Logger, clock: @escaping @Sendable () -> UInt64
    ) {
        self.settings = settings
        share = (settings.partitions + max(1, processes) - 1) / max(1, processes)
        self.redis = redis
        self.handler = handler
        self.makeDependencies = makeDependencies
        self.logger = logger
        self.clock = clock
        var generator = SystemRandomNumberGenerator()
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let hostName = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        prefix = "\(hostName)-\(getpid())-\(String(generator.next() as UInt32, radix: 36))"
    }

    /// Asks every loop to stop after its current entry.
    public func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
    }

    private var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) }

    /// One worker's loop; returns after `stop()`.
    public func runWorker(_ index: Int) {
        let name = "\(prefix)-\(index)"
        var logger = logger
        logger[metadataKey: "worker"] = "\(index)"
        let connection = makeConnection(commandTimeout: redis.commandTimeoutSeconds + Double(Self.blockMilliseconds) / 1000 + 1)
        let dependencies = makeDependencies()
        var current: QueuePartition?
        var drainPending = false
        while !isStopping {
            guard let partition = current else {
                let withinShare = held.withLock { held in
                    guard held.partitions.count + held.acquiring < share else { return false }
                    held.acquiring += 1
                    return true
                }
                if !withinShare {
                    // Stand by: look for a free partition once a lease, after the other processes.
                    pause(seconds: Int(settings.leaseMilliseconds / 1000))
                }
                current = acquire(name, everywhere: withinShare, connection: connection, logger: logger)
                if withinShare { held.withLock { $0.acquiring -= 1 } }
                drainPending = true
                if current == nil { pause(seconds: 1) }
                continue
            }
            if held.withLock({ $0.lost.contains(name) }) {
                logger.warning("partition lease lost; leaving it", metadata: ["partition": .stringConvertible(partition.keys.partition)])
                forget(name)
                current = nil
                continue
            }
            do throws(StateStoreError) {
                var entry: StreamEntry?
                if drainPending {
                    entry = try partition.claimPending()
                    drainPending = entry != nil
                }
                if entry == nil { entry = try partition.readNew(blockMilliseconds: Self.blockMilliseconds) }
                if let entry { try work(entry, in: partition, with: dependencies, logger: logger) }
            } catch {
                logger.warning("queue read failed; retrying", metadata: [LogKey.error: "\(error)", "partition": .stringConvertible(partition.keys.partition)])
                drainPending = true
                pause(seconds: 1)
            }
        }
        if let current {
            current.releaseLease()
            forget(name)
        }
    }

    /// Renews the lease of every partition this process holds, every second (every third of a
    /// shorter lease), until
    /// `stop()` and the workers are done.
    public func runHeartbeat(until workersDone: @Sendable () -> Bool) {
        let connection = makeConnection(commandTimeout: redis.commandTimeoutSeconds)
        let lease = Array(String(settings.leaseMilliseconds).utf8)
        while !workersDone() {
            for (name, partition) in held.withLock({ Array($0.partitions) }) {
                let renewed = QueuePartition(keys: QueueKeys(partition: partition), worker: name, connection: connection).takeLease(milliseconds: lease)
                if renewed == false { _ = held.withLock { $0.lost.insert(name) } }
            }
            usleep(UInt32(min(settings.leaseMilliseconds / 3, 1_000)) * 1000)
        }
    }

    /// Processes one entry to its end: acknowledged, dead-lettered, or left pending at a stop
    /// (the next holder claims it). Failed attempts wait 1, 2, 4… s (at most 30) in place, so
    /// the partition's later entries keep waiting behind it.
    private func work(_ entry: StreamEntry, in partition: QueuePartition, with dependencies: ThreadDependencies, logger: Logger) throws(StateStoreError) {
        while true {
            let attempt = try partition.countAttempt(entry)
            if attempt > settings.maxAttempts {
                // Attempts that never reported back (the worker died in them) count too.
                try deadLetter(entry, in: partition, reason: "attempts_exhausted", attempts: attempt - 1, logger: logger)
                return
            }
            var update = QueuedUpdate(
                body: entry.body, callbackAnswered: entry.callbackAnswered, attempt: attempt, isLastAttempt: attempt >= settings.maxAttempts)
            update.isReplay = entry.isReplay
            switch handler.process(update, requestID: "q\(partition.keys.partition)-\(entry.id)", with: dependencies, logger: logger) {
            case .done:
                try partition.acknowledge(entry)
                Counter(label: GatewayMetric.queueProcessed).increment()
                return
            case .deadLetter(let reason):
                try deadLetter(entry, in: partition, reason: reason, attempts: attempt, logger: logger)
                return
            case .retry:
                pause(seconds: min(30, 1 << min(attempt - 1, 5)))
                // Stopping, or the partition went to another worker: leave the entry pending for its next holder.
                if isStopping || held.withLock({ $0.lost.contains(partition.worker) }) { return }
            }
        }
    }

    private func deadLetter(_ entry: StreamEntry, in partition: QueuePartition, reason: String, attempts: Int, logger: Logger) throws(StateStoreError) {
        try partition.deadLetter(entry, reason: reason, attempts: attempts, limit: settings.deadLetterLimit)
        Counter(label: GatewayMetric.queueDeadLetters, dimensions: [("reason", reason)]).increment()
        logger.error(
            "queue entry dead-lettered",
            metadata: ["partition": .stringConvertible(partition.keys.partition), "entry": "\(entry.id)", LogKey.reason: "\(reason)"])
    }

    /// Takes the first free partition from a random starting point: looking at every partition
    /// when taking this process's share (so none is left without a worker), at 16 when standing by.
    private func acquire(_ name: String, everywhere: Bool, connection: RedisConnection, logger: Logger) -> QueuePartition? {
        let lease = Array(String(settings.leaseMilliseconds).utf8)
        let start = Int.random(in: 0..<settings.partitions)
        for step in 0..<(everywhere ? settings.partitions : min(16, settings.partitions)) {
            let partition = QueuePartition(keys: QueueKeys(partition: (start + step) % settings.partitions), worker: name, connection: connection)
            guard partition.takeLease(milliseconds: lease) == true else { continue }
            do {
                try partition.prepare()
            } catch {
                partition.releaseLease()
                return nil
            }
            held.withLock { $0.partitions[name] = partition.keys.partition }
            logger.debug("partition taken", metadata: ["partition": .stringConvertible(partition.keys.partition)])
            return partition
        }
        return nil
    }

    private func forget(_ name: String) {
        held.withLock {
            $0.partitions[name] = nil
            $0.lost.remove(name)
        }
    }

    /// Sleeps up to `seconds`, waking early for a stop.
    private func pause(seconds: Int) {
        for _ in 0..<(seconds * 10) where !isStopping { usleep(100_000) }
    }

    private func makeConnection(commandTimeout: Double) -> RedisConnection {
        RedisConnection(
            settings: .init(redis, commandTimeoutSeconds: commandTimeout), clock: clock)
    }
}
