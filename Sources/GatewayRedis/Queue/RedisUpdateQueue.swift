import GatewayCore

/// Queue mode's front door on Redis: one `EVALSHA` per update (dedupe, rate limit, backlog
/// bound, `XADD`), on the responder thread's own connection.
public final class RedisUpdateQueue: UpdateQueue {
    private let store: RedisStateStore
    private let settings: QueueSettings
    /// The script's arguments that come from the configuration, formatted once.
    private let limits: (dedupe: [UInt8], capacity: [UInt8], window: [UInt8], backlog: [UInt8], age: [UInt8], prompt: [UInt8])

    /// Shares `store`'s connection (and its warnings), so a thread holds one connection.
    public init(store: RedisStateStore, settings: QueueSettings) {
        self.store = store
        self.settings = settings
        let policy = store.policy
        limits = (
            Array(String(policy.dedupeTTLSeconds).utf8), Array(String(policy.rateLimitRequests).utf8),
            Array(String(policy.rateLimitWindowMilliseconds).utf8), Array(String(settings.maxBacklog).utf8),
            Array(String(settings.maxAgeMilliseconds).utf8), Array(String(settings.callbackPromptMilliseconds).utf8)
        )
    }

    public func enqueue(_ request: EnqueueRequest) throws(StateStoreError) -> EnqueueDecision {
        let keys = QueueKeys(partition: settings.partition(of: request.subject, updateID: request.updateID))
        let reply = try store.evaluate(
            QueueScripts.enqueue, keys: [keys.stream, keys.seen(request.updateID), keys.rate(request.subject)],
            bytes: [
                request.body, limits.dedupe, limits.capacity, limits.window, request.subject == nil ? [0x30] : [0x31],
                limits.backlog, limits.age, request.isCallback ? [0x31] : [0x30], limits.prompt,
            ])
        return try Self.decision(reply, retryAfterSeconds: settings.retryAfterSeconds)
    }

    static func decision(_ reply: RedisReply, retryAfterSeconds: Int) throws(StateStoreError) -> EnqueueDecision {
        guard case .array(let items) = reply, let kind = items.first?.text else { throw .unexpectedReply }
        let flag = items.count > 1 && items[1] == .integer(1)
        switch kind {
        case "queued": return .queued(answerCallbackNow: flag)
        case "duplicate": return .duplicate
        case "limited": return .limited(warn: flag)
        case "full": return .full(retryAfterSeconds: retryAfterSeconds)
        default: throw .unexpectedReply
        }
    }
}
