/// The numbers the state store works with, derived once from the configuration.
public struct StatePolicy: Sendable, Equatable {
    /// Updates a user may send per window, and the window.
    public var rateLimitRequests: Int
    public var rateLimitWindowMilliseconds: Int64
    public var sessionTTLSeconds: Int
    /// How long a processed update's mark is kept, so a redelivery is recognised; also how long
    /// a user's place in the stream and outbox are kept.
    public var dedupeTTLSeconds: Int
    /// How long an update's claim and its user's processing lease hold without `finish`: the
    /// update's deadline and a margin, so it only expires when its responder is gone.
    public var leaseMilliseconds: Int64
    /// The windows of the gateway's replies that the store admits in `begin` and `finish`.
    public var outgoing: OutgoingLimits

    public init(
        rateLimitRequests: Int, rateLimitWindowMilliseconds: Int64, sessionTTLSeconds: Int, dedupeTTLSeconds: Int,
        leaseMilliseconds: Int64, outgoing: OutgoingLimits = OutgoingLimits()
    ) {
        self.rateLimitRequests = rateLimitRequests
        self.rateLimitWindowMilliseconds = rateLimitWindowMilliseconds
        self.sessionTTLSeconds = sessionTTLSeconds
        self.dedupeTTLSeconds = dedupeTTLSeconds
        self.leaseMilliseconds = leaseMilliseconds
        self.outgoing = outgoing
    }
}
