/// The moment an update's work must be over, on the monotonic clock: one absolute deadline
/// handed down to every wait, as swift-nio's `NIODeadline`, so that each wait takes
/// `min(its own limit, what is left)` and the whole update is bounded.
public struct Deadline: Sendable, Hashable, Comparable {
    /// Monotonic nanoseconds.
    public let uptimeNanoseconds: UInt64

    public init(uptimeNanoseconds: UInt64) {
        self.uptimeNanoseconds = uptimeNanoseconds
    }

    /// `seconds` after `now`, saturating instead of overflowing.
    public static func after(seconds: Double, from now: UInt64) -> Deadline {
        guard seconds.isFinite, seconds > 0 else { return Deadline(uptimeNanoseconds: now) }
        let span = seconds >= 1e9 ? UInt64.max : UInt64(seconds * 1e9)
        let (sum, overflow) = now.addingReportingOverflow(span)
        return Deadline(uptimeNanoseconds: overflow ? .max : sum)
    }

    public static let distantFuture = Deadline(uptimeNanoseconds: .max)

    /// A wait shorter than this is no wait: libcurl and hiredis read a timeout of 0 as "none".
    public static let shortestWaitNanoseconds: UInt64 = 1_000_000

    /// What is left at `now`: 0 once passed. Compared before subtracting, since `now` may have
    /// been read after the deadline.
    public func remainingNanoseconds(at now: UInt64) -> UInt64 {
        uptimeNanoseconds > now ? uptimeNanoseconds - now : 0
    }

    /// `limit` seconds, or what is left when that is less; nil when less than a millisecond is
    /// left: the wait must not start at all ("now", never "no timeout").
    public func timeout(cappedAt limit: Double, at now: UInt64) -> Double? {
        let left = remainingNanoseconds(at: now)
        guard left >= Self.shortestWaitNanoseconds, limit * 1e9 >= Double(Self.shortestWaitNanoseconds) else { return nil }
        return min(limit, Double(left) / 1e9)
    }

    /// Whole milliseconds left at `now`, at most `limit`; 0 when under a millisecond is left.
    public func milliseconds(cappedAt limit: Int64, at now: UInt64) -> Int64 {
        let left = Int64(clamping: remainingNanoseconds(at: now) / 1_000_000)
        return max(0, min(limit, left))
    }

    public func isPassed(at now: UInt64) -> Bool {
        remainingNanoseconds(at: now) < Self.shortestWaitNanoseconds
    }

    /// The earlier of the two.
    public func capped(by other: Deadline) -> Deadline {
        min(self, other)
    }

    public static func < (lhs: Deadline, rhs: Deadline) -> Bool {
        lhs.uptimeNanoseconds < rhs.uptimeNanoseconds
    }
}
