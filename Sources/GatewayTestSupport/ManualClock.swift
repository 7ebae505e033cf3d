import GatewayCore
import Synchronization

/// A monotonic clock that only moves when told to, or when someone sleeps on it: waits in the
/// code under test take no real time and are exactly reproducible.
public final class ManualClock: Sendable {
    private let nanoseconds: Atomic<UInt64>

    public init(startingAt nanoseconds: UInt64 = 1_000_000_000_000) {
        self.nanoseconds = Atomic(nanoseconds)
    }

    public var now: UInt64 { nanoseconds.load(ordering: .sequentiallyConsistent) }

    /// Monotonic milliseconds, as the in-memory stores count.
    public var milliseconds: Int64 { Int64(now / 1_000_000) }

    public func advance(nanoseconds: UInt64) {
        self.nanoseconds.add(nanoseconds, ordering: .sequentiallyConsistent)
    }

    public func advance(milliseconds: Int64) {
        advance(nanoseconds: UInt64(max(0, milliseconds)) * 1_000_000)
    }

    /// This clock for the core: sleeping moves it.
    public var gatewayClock: GatewayClock {
        GatewayClock(now: { self.now }, sleep: { self.advance(nanoseconds: $0) })
    }
}
