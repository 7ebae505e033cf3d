import GatewayCore

extension StatePolicy {
    /// Generous limits so tests that are not about rate limiting never hit them.
    public static let testing = StatePolicy(
        rateLimitRequests: 1000, rateLimitWindowMilliseconds: 1000, sessionTTLSeconds: 86_400, dedupeTTLSeconds: 86_400,
        leaseMilliseconds: 30_000)
}
