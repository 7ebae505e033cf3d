/// The per-user rate limit: a token bucket holding up to `capacity` tokens that refills at
/// `capacity` tokens per window, on the store's clock. Each update takes one token; an update
/// that finds less than one is limited.
///
/// The Redis script computes exactly this (in Lua, with the same integer milli-token units);
/// `TokenBucketTests` and the script tests share their vectors.
public struct TokenBucket: Sendable, Equatable {
    /// Tokens in thousandths, so fractional refill needs no floating point in either language.
    public var milliTokens: Int64
    /// When the bucket was last updated, in the store's milliseconds.
    public var updatedAt: Int64
    /// When the user was last told to slow down.
    public var warnedAt: Int64?

    public init(milliTokens: Int64, updatedAt: Int64, warnedAt: Int64? = nil) {
        self.milliTokens = milliTokens
        self.updatedAt = updatedAt
        self.warnedAt = warnedAt
    }

    public struct Outcome: Sendable, Equatable {
        public var allowed: Bool
        /// True for a limited update when the user has not been warned within the last window.
        public var warn: Bool
    }

    /// Takes a token at `now` from `bucket` (nil: a new user with a full bucket).
    public static func take(
        _ bucket: TokenBucket?, now: Int64, capacity: Int, windowMilliseconds: Int64
    ) -> (TokenBucket, Outcome) {
        let full = Int64(capacity) * 1000
        var state = bucket ?? TokenBucket(milliTokens: full, updatedAt: now)
        // More than a window refills the bucket anyway; the cap keeps Lua's doubles exact.
        let elapsed = min(max(0, now - state.updatedAt), windowMilliseconds)
        // capacity tokens per window = capacity * 1000 milli-tokens per windowMilliseconds.
        let refill = elapsed * Int64(capacity) * 1000 / max(1, windowMilliseconds)
        state.milliTokens = min(full, state.milliTokens + refill)
        // Advance the clock only by the time actually turned into tokens, so rounding never loses time.
        if state.milliTokens < full {
            state.updatedAt += refill * max(1, windowMilliseconds) / (Int64(capacity) * 1000)
        } else {
            state.updatedAt = now
        }
        if state.milliTokens >= 1000 {
            state.milliTokens -= 1000
            return (state, Outcome(allowed: true, warn: false))
        }
        let warn = state.warnedAt.map { now - $0 >= windowMilliseconds } ?? true
        if warn { state.warnedAt = now }
        return (state, Outcome(allowed: false, warn: warn))
    }
}
