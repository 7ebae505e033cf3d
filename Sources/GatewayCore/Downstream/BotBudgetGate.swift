/// What one process knows of the bot-wide budget between its calls to the store, so that the
/// budget's one key (`{tgout}`, one Redis Cluster slot) is asked about once per send it admits,
/// not once per attempt, whatever the update rate: after a refusal, the soonest the budget can
/// have a slot (a lower bound: other processes' reservations only push it later, and no
/// reservation is ever given back), so that this process's sends that cannot wait that long
/// are refused here. It only ever refuses; what it lets through the store decides. Shared by
/// a process's threads.
public final class BotBudgetGate: Sendable {
    private let fullUntil = Locked<UInt64>(0)
    private let clock: @Sendable () -> UInt64

    /// `clock`: monotonic nanoseconds.
    public init(clock: @escaping @Sendable () -> UInt64) {
        self.clock = clock
    }

    /// Whether a send that may wait `maxWaitMilliseconds` is sure to find no slot in time.
    public func refuses(maxWaitMilliseconds: Int64) -> Bool {
        let now = clock()
        return fullUntil.withLock { now + Self.nanoseconds(maxWaitMilliseconds) < $0 }
    }

    /// The store refused a send: the budget has no slot for `soonestMilliseconds` from now.
    public func noteRefused(soonestMilliseconds: Int64) {
        let until = clock() + Self.nanoseconds(soonestMilliseconds)
        fullUntil.withLock { $0 = max($0, until) }
    }

    private static func nanoseconds(_ milliseconds: Int64) -> UInt64 { UInt64(max(0, milliseconds)) * 1_000_000 }
}
