import CoreMetrics
import GatewayCore
import Logging
import Synchronization

/// Rate-limits warnings about a failing dependency across a process's threads: one line every
/// `interval`, with how many failures it stands for, and one line when the dependency recovers:
/// at the first success after `quiet` without a failure. A success between failures is no
/// recovery: while one node of a cluster is down, the calls to the others succeed in between.
public final class DependencyWarnings: Sendable {
    private let interval: UInt64
    private let quiet: UInt64
    private let clock: @Sendable () -> UInt64
    private let lastWarning = Atomic<UInt64>(0)
    private let lastFailure = Atomic<UInt64>(0)
    private let suppressed = Atomic<Int>(0)
    private let isFailing = Atomic<Bool>(false)

    public init(intervalSeconds: Double = 5, quietSeconds: Double = 1, clock: @escaping @Sendable () -> UInt64) {
        self.interval = UInt64(intervalSeconds * 1e9)
        self.quiet = UInt64(quietSeconds * 1e9)
        self.clock = clock
    }

    public func failed(_ dependency: String, error: String, logger: Logger) {
        Counter(label: GatewayMetric.dependencyFailures, dimensions: [("dependency", dependency)]).increment()
        let now = clock()
        lastFailure.store(now, ordering: .relaxed)
        // Released after the failure's time: a thread that sees the flag sees that time too.
        isFailing.store(true, ordering: .releasing)
        let last = lastWarning.load(ordering: .relaxed)
        // Another thread may have stored a later time than this one read: compare before
        // subtracting (UInt64 arithmetic traps below zero).
        guard last == 0 || (now > last && now - last >= interval),
            lastWarning.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
        else {
            suppressed.add(1, ordering: .relaxed)
            return
        }
        let count = suppressed.exchange(0, ordering: .relaxed) + 1
        logger.warning(
            "dependency failing; handling updates without it",
            metadata: ["dependency": "\(dependency)", LogKey.error: "\(error)", "failures": .stringConvertible(count)])
    }

    public func succeeded(_ dependency: String, logger: Logger) {
        guard isFailing.load(ordering: .acquiring) else { return }
        let now = clock()
        let last = lastFailure.load(ordering: .relaxed)
        guard now > last, now - last >= quiet, isFailing.exchange(false, ordering: .relaxed) else { return }
        logger.info("dependency recovered", metadata: ["dependency": "\(dependency)"])
    }
}
