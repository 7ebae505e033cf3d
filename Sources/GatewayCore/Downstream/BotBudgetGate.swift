/// What one process knows of the bot-wide budget between its calls to the store, so that the
/// budget's one key (`{tgout}`, one Redis Cluster slot) is asked about once per send it admits,
/// not once per attempt, whatever the update rate:
/// - after a refusal, the soonest the budget can have a slot (a lower bound: other processes'
///   reservations only push it later, and no reservation is ever given back), so that this
///   process's sends that cannot wait that long are refused here;
/// - the pause after a 429: known at once by the process that met it, read by the others at
///   most every ``pauseReadNanoseconds``.
/// Shared by a process's threads.
public final class BotBudgetGate: Sendable {
    private struct State {
        var fullUntil: UInt64 = 0
        var pausedUntil: UInt64 = 0
        var pauseReadAt: UInt64?
    }

    /// How stale the pause a process goes by may be: a send within it after another process's
    /// 429 meets a 429 itself, which pauses this process at once.
    public static let pauseReadNanoseconds: UInt64 = 250_000_000

    private let state = Locked(State())
    private let clock: @Sendable () -> UInt64

    /// `clock`: monotonic nanoseconds.
    public init(clock: @escaping @Sendable () -> UInt64) {
        self.clock = clock
    }

    /// Whether a send that may wait `maxWaitMilliseconds` is sure to find no slot in time.
    public func refuses(maxWaitMilliseconds: Int64) -> Bool {
        let now = clock()
        return state.withLock { now + Self.nanoseconds(maxWaitMilliseconds) < $0.fullUntil }
    }

    /// The store refused a send: the budget has no slot for `soonestMilliseconds` from now.
    public func noteRefused(soonestMilliseconds: Int64) {
        let until = clock() + Self.nanoseconds(soonestMilliseconds)
        state.withLock { $0.fullUntil = max($0.fullUntil, until) }
    }

    /// The pause left, when this process knows it fresh enough; nil when the store must be asked.
    public func knownPauseMilliseconds() -> Int64? {
        let now = clock()
        return state.withLock { state in
            guard let readAt = state.pauseReadAt, now < readAt + Self.pauseReadNanoseconds else { return nil }
            return state.pausedUntil > now ? Int64((state.pausedUntil - now) / 1_000_000) : 0
        }
    }

    /// The pause as the store has it now (`milliseconds` left, 0 for none).
    public func notePauseRead(milliseconds: Int64) {
        let now = clock()
        state.withLock { state in
            state.pausedUntil = now + Self.nanoseconds(milliseconds)
            state.pauseReadAt = now
        }
    }

    /// This process met a 429: paused for `milliseconds` at once, whatever it read before.
    public func notePaused(milliseconds: Int64) {
        let until = clock() + Self.nanoseconds(milliseconds)
        state.withLock { $0.pausedUntil = max($0.pausedUntil, until) }
    }

    private static func nanoseconds(_ milliseconds: Int64) -> UInt64 { UInt64(max(0, milliseconds)) * 1_000_000 }
}
