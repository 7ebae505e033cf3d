import Synchronization

/// Per-service circuit breaker shared by a process's threads: after `threshold` failures in a
/// row the service is not called for `openSeconds` (callers fail fast and users get the generic
/// apology), then one call is let through to probe it; its success closes the circuit.
public final class CircuitBreaker: Sendable {
    public enum State: Sendable, Equatable { case closed, open, halfOpen }

    private struct Entry {
        var failures = 0
        var openUntil: UInt64 = 0
        var probing = false
    }

    private let threshold: Int
    private let openNanoseconds: UInt64
    private let clock: @Sendable () -> UInt64
    private let entries = Locked<[ServiceName: Entry]>([:])

    public init(threshold: Int = 5, openSeconds: Double = 10, clock: @escaping @Sendable () -> UInt64) {
        self.threshold = threshold
        self.openNanoseconds = UInt64(openSeconds * 1e9)
        self.clock = clock
    }

    /// Whether a call to `service` may go out now.
    public func allows(_ service: ServiceName) -> Bool {
        let now = clock()
        return entries.withLock { entries in
            var entry = entries[service] ?? Entry()
            defer { entries[service] = entry }
            guard entry.failures >= threshold else { return true }
            guard now >= entry.openUntil, !entry.probing else { return false }
            entry.probing = true
            return true
        }
    }

    public func recordSuccess(_ service: ServiceName) {
        entries.withLock { $0[service] = Entry() }
    }

    public func recordFailure(_ service: ServiceName) {
        let now = clock()
        entries.withLock { entries in
            var entry = entries[service] ?? Entry()
            entry.failures += 1
            entry.probing = false
            if entry.failures >= threshold { entry.openUntil = now + openNanoseconds }
            entries[service] = entry
        }
    }

    public func state(of service: ServiceName) -> State {
        let now = clock()
        return entries.withLock { entries in
            guard let entry = entries[service], entry.failures >= threshold else { return .closed }
            return now >= entry.openUntil ? .halfOpen : .open
        }
    }
}
