/// The core's only notion of time, handed in: the monotonic clock, and a way to pass time.
/// The product gives the system's (`CLOCK_MONOTONIC`, `nanosleep`); tests give one whose sleep
/// moves the clock, so waits take no real time.
public struct GatewayClock: Sendable {
    /// Monotonic nanoseconds.
    public let now: @Sendable () -> UInt64
    /// Blocks the calling thread for about this many nanoseconds.
    public let sleep: @Sendable (_ nanoseconds: UInt64) -> Void

    public init(now: @escaping @Sendable () -> UInt64, sleep: @escaping @Sendable (_ nanoseconds: UInt64) -> Void) {
        self.now = now
        self.sleep = sleep
    }

    /// Milliseconds elapsed since `start`, 0 if the clock reads earlier (another thread's stamp).
    public func milliseconds(since start: UInt64) -> Double {
        let now = self.now()
        return now > start ? Double((now - start) / 1000) / 1000 : 0
    }
}
