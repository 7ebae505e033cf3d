import GatewayCore

/// Shared cases for the rate limit: `TokenBucketTests` runs them against the Swift bucket and
/// the script tests against the Lua one in a real Redis, so the two cannot drift apart.
/// Times are relative to "now"; every decision holds even if up to 100 ms more pass (Redis's
/// clock moves on between a test setting up a bucket and running the script).
public struct TokenBucketVector: Sendable, CustomStringConvertible {
    public let name: String
    public let capacity: Int
    public let windowMilliseconds: Int64
    /// The bucket before the update: milli-tokens, how long ago it was updated, when the user
    /// was last warned (ms ago). Nil: a user with no bucket yet.
    public let start: (milliTokens: Int64, updatedAgo: Int64, warnedAgo: Int64?)?
    public let allowed: Bool
    public let warn: Bool
    /// Milli-tokens left after the update.
    public let milliTokensAfter: Int64

    public var description: String { name }

    public static let all: [TokenBucketVector] = [
        .init(name: "first update of a new user", capacity: 1, windowMilliseconds: 1000, start: nil, allowed: true, warn: false, milliTokensAfter: 0),
        .init(name: "empty bucket warns", capacity: 1, windowMilliseconds: 1000, start: (0, 0, nil), allowed: false, warn: true, milliTokensAfter: 0),
        .init(
            name: "warned within the window stays quiet", capacity: 1, windowMilliseconds: 1000, start: (0, 0, 400), allowed: false, warn: false,
            milliTokensAfter: 0),
        .init(
            name: "warned a window ago warns again", capacity: 1, windowMilliseconds: 1000, start: (0, 0, 1000), allowed: false, warn: true,
            milliTokensAfter: 0),
        .init(
            name: "half a window refills half a token", capacity: 1, windowMilliseconds: 1000, start: (0, 500, nil), allowed: false, warn: true,
            milliTokensAfter: 500),
        .init(
            name: "a full window refills", capacity: 1, windowMilliseconds: 1000, start: (0, 1000, nil), allowed: true, warn: false,
            milliTokensAfter: 0),
        .init(
            name: "refill never exceeds capacity", capacity: 2, windowMilliseconds: 1000, start: (1500, 60_000, nil), allowed: true, warn: false,
            milliTokensAfter: 1000),
        .init(
            name: "burst of five allows the fifth", capacity: 5, windowMilliseconds: 1000, start: (1000, 0, nil), allowed: true, warn: false,
            milliTokensAfter: 0),
        .init(
            name: "fractional rate, not yet a token", capacity: 3, windowMilliseconds: 1000, start: (0, 150, nil), allowed: false, warn: true,
            milliTokensAfter: 450),
        .init(
            name: "fractional rate, a token", capacity: 3, windowMilliseconds: 1000, start: (0, 400, nil), allowed: true, warn: false,
            milliTokensAfter: 200),
        .init(
            name: "long window, not yet", capacity: 2, windowMilliseconds: 10_000, start: (0, 4000, 1000), allowed: false, warn: false,
            milliTokensAfter: 800),
        .init(
            name: "long window, refilled", capacity: 2, windowMilliseconds: 10_000, start: (0, 6000, 1000), allowed: true, warn: false,
            milliTokensAfter: 200),
    ]

    /// The bucket state at `now` this vector starts from.
    public func bucket(now: Int64) -> TokenBucket? {
        start.map { TokenBucket(milliTokens: $0.milliTokens, updatedAt: now - $0.updatedAgo, warnedAt: $0.warnedAgo.map { now - $0 }) }
    }
}
