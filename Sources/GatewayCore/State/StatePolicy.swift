/// The numbers the state store works with, derived once from the configuration.
public struct StatePolicy: Sendable, Equatable {
    /// Updates a user may send per window, and the window.
    public var rateLimitRequests: Int
    public var rateLimitWindowMilliseconds: Int64
    public var sessionTTLSeconds: Int
    /// How long a processed update's mark is kept, so a redelivery is recognised.
    public var dedupeTTLSeconds: Int
    /// How long an update's claim and its user's processing lease hold without `finish`: the
    /// longest an update can take. A responder that dies frees them when they expire.
    public var leaseMilliseconds: Int64
    /// How long a second update of a user waits for the first to finish before giving up.
    public var userWaitMilliseconds: Int64

    public init(
        rateLimitRequests: Int, rateLimitWindowMilliseconds: Int64, sessionTTLSeconds: Int, dedupeTTLSeconds: Int,
        leaseMilliseconds: Int64, userWaitMilliseconds: Int64
    ) {
        self.rateLimitRequests = rateLimitRequests
        self.rateLimitWindowMilliseconds = rateLimitWindowMilliseconds
        self.sessionTTLSeconds = sessionTTLSeconds
        self.dedupeTTLSeconds = dedupeTTLSeconds
        self.leaseMilliseconds = leaseMilliseconds
        self.userWaitMilliseconds = userWaitMilliseconds
    }
}
