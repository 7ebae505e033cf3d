import Logging

/// What travels with one update through every stage: its ids and logger, its deadline, and
/// whether the thread carrying it may wait.
///
/// The webhook path may not wait for anything another update or the outgoing budget holds (a
/// FastCGI thread waiting would be a thread Telegram's other updates cannot use): what cannot
/// happen now is handed to the user's stream and the request is answered. A stream worker may
/// wait, within the deadline and while it still holds its partition.
public struct UpdateContext {
    /// The fields of every line about the update, set as the stages learn them.
    public var line: UpdateLine
    /// The logger the update came with, without the update's fields.
    private let baseLogger: Logger
    public let requestID: String
    public let deadline: Deadline
    public let mayWait: Bool
    public let clock: GatewayClock
    /// A worker's: whether it still holds its partition. Checked before every side effect, so a
    /// worker whose lease lapsed stops at once instead of at its next entry; called on the
    /// worker's thread, which may renew a late lease on its own connection.
    private let holdsPartition: (() -> Bool)?

    public init(
        requestID: String, logger: Logger, deadline: Deadline, mayWait: Bool, clock: GatewayClock,
        holdsPartition: (() -> Bool)? = nil
    ) {
        self.line = UpdateLine(requestID: requestID)
        self.baseLogger = logger
        self.requestID = requestID
        self.deadline = deadline
        self.mayWait = mayWait
        self.clock = clock
        self.holdsPartition = holdsPartition
    }

    /// A logger whose lines carry the update's fields, for lines other than its last.
    public var logger: Logger {
        var logger = baseLogger
        for (key, value) in line.metadata { logger[metadataKey: key] = value }
        return logger
    }

    /// The line the update ends with: the update's fields, rendered without a metadata
    /// dictionary by the gateway's handler.
    public func log(level: Logger.Level, _ message: String, update line: UpdateLine) {
        baseLogger.log(level: level, message, update: line)
    }

    /// True once the work must stop: the deadline passed or the worker's partition is no longer its.
    public var isCancelled: Bool {
        deadline.isPassed(at: clock.now()) || holdsPartition?() == false
    }

    /// `limit` seconds capped by the deadline; nil when the wait must not start.
    public func timeout(cappedAt limit: Double) -> Double? {
        deadline.timeout(cappedAt: limit, at: clock.now())
    }

    /// Milliseconds this thread may still wait: 0 on the webhook path.
    public var waitBudgetMilliseconds: Int64 {
        mayWait ? deadline.milliseconds(cappedAt: .max, at: clock.now()) : 0
    }

    /// Sleeps `milliseconds` if this thread may wait that long; false (without sleeping) if not.
    public func pause(milliseconds: Int64) -> Bool {
        guard milliseconds > 0 else { return !isCancelled }
        guard mayWait, milliseconds <= waitBudgetMilliseconds, !isCancelled else { return false }
        clock.sleep(UInt64(milliseconds) * 1_000_000)
        return !isCancelled
    }

    /// The same context with another deadline (a worker's next stage after a wait).
    public func renewed(deadline: Deadline) -> UpdateContext {
        var renewed = UpdateContext(
            requestID: requestID, logger: baseLogger, deadline: deadline, mayWait: mayWait, clock: clock, holdsPartition: holdsPartition)
        renewed.line = line
        return renewed
    }

    public func elapsedMilliseconds(since start: UInt64) -> Double {
        clock.milliseconds(since: start)
    }
}
