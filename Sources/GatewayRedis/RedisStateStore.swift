import GatewayCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The `StateStore` on Redis through hiredis: one `EVALSHA` per decision, on this thread's own
/// connection. Failures throw (the pipeline then fails open) and are warned about, rate-limited.
public final class RedisStateStore: StateStore, OutgoingLimiter {
    private let connection: RedisConnection
    let policy: StatePolicy
    private let warnings: DependencyWarnings
    private let logger: Logger
    private let clock: @Sendable () -> UInt64
    private let limits: OutgoingLimits
    private var tokens = 0
    /// Random per store, with the pid: tokens of different threads and processes never meet.
    private let tokenPrefix: String
    /// The begin script's arguments that come from the policy, formatted once.
    private let policyArguments: [String]

    public init(
        config: GatewayConfig.RedisSettings, policy: StatePolicy, limits: OutgoingLimits = OutgoingLimits(),
        warnings: DependencyWarnings, logger: Logger, clock: @escaping @Sendable () -> UInt64
    ) {
        self.limits = limits
        connection = RedisConnection(
            settings: .init(config), clock: clock)
        self.policy = policy
        self.warnings = warnings
        self.logger = logger
        self.clock = clock
        var generator = SystemRandomNumberGenerator()
        tokenPrefix = String(generator.next() as UInt64, radix: 36) + "-\(getpid())"
        policyArguments = [
            String(policy.leaseMilliseconds), String(policy.dedupeTTLSeconds), String(policy.rateLimitRequests),
            String(policy.rateLimitWindowMilliseconds), String(policy.sessionTTLSeconds),
        ]
    }

    public func begin(_ request: BeginRequest) throws(StateStoreError) -> BeginDecision {
        let keys = StateSubjectKeys(subject: request.subject, updateID: request.updateID)
        tokens += 1
        let token = "\(tokenPrefix)-\(tokens)"
        let arguments = [token] + policyArguments + [request.needsSession ? "1" : "0", request.newInternalUserID, request.queued ? "1" : "0", request.replay ? "1" : "0"]
        // A second update of a user waits for the first, polling with backoff, within userWait.
        let deadline = clock() + UInt64(policy.userWaitMilliseconds) * 1_000_000
        var pause: UInt32 = 5_000
        while true {
            let reply = try evaluate(RedisScripts.begin, keys: [keys.update, keys.rate, keys.session, keys.lease], arguments)
            let decision = try Self.decision(reply, claim: Claim(updateID: request.updateID, subject: request.subject, token: token))
            guard case .busy = decision, clock() < deadline else { return decision }
            usleep(pause)
            pause = min(pause * 2, 100_000)
        }
    }

    public func finish(_ completion: Completion) throws(StateStoreError) {
        let claim = completion.claim
        let keys = StateSubjectKeys(subject: claim.subject, updateID: claim.updateID)
        var action = "keep", json = ""
        switch completion.stateChange {
        case .keep: break
        case .set(let state): (action, json) = ("set", state)
        case .clear: action = "clear"
        }
        let reply = try evaluate(
            RedisScripts.finish, keys: [keys.update, keys.session, keys.lease],
            [claim.token, String(policy.dedupeTTLSeconds), String(policy.sessionTTLSeconds), action, json, completion.internalUserID ?? ""])
        guard case .integer = reply else { throw failed(.unexpectedReply) }
    }

    /// Connects (loading the scripts) and pings: what `gatewayctl check-config` reports.
    public func ping() throws(StateStoreError) {
        guard case .status("PONG") = try connection.command("PING") else { throw .unexpectedReply }
    }

    public func storeCallbackData(_ data: String, ttlSeconds: Int) throws(StateStoreError) -> String {
        var generator = SystemRandomNumberGenerator()
        let token = String(generator.next() as UInt64, radix: 36) + String(generator.next() as UInt64, radix: 36)
        let reply: RedisReply
        do {
            reply = try connection.command("SET", RedisScripts.callbackDataKey(token), data, "EX", String(ttlSeconds))
        } catch {
            throw failed(error)
        }
        guard case .status = reply else { throw failed(.refused) }
        return token
    }

    public func loadCallbackData(token: String) throws(StateStoreError) -> String? {
        guard token.count <= 40, token.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else { return nil }
        let reply: RedisReply
        do {
            reply = try connection.command("GET", RedisScripts.callbackDataKey(token))
        } catch {
            throw failed(error)
        }
        switch reply {
        case .null: return nil
        case .string: return reply.text
        default: throw failed(.unexpectedReply)
        }
    }

    public func awaitSlot(chatID: Int64, throughBotAPI: Bool) -> Bool {
        let isGroup = chatID < 0  // groups, supergroups and channels have negative ids
        tokens += 1
        let arguments = [
            String(throughBotAPI ? limits.botMessagesPerSecond : 0),
            String(isGroup ? limits.groupMessages : limits.privateChatMessages),
            String(isGroup ? limits.groupWindowMilliseconds : limits.privateWindowMilliseconds),
            String(limits.maxWaitMilliseconds), "\(tokenPrefix)-\(tokens)",
        ]
        let reply: RedisReply
        do {
            reply = try evaluate(RedisScripts.outgoing, keys: [RedisScripts.outgoingBotKey, RedisScripts.outgoingChatKey(chatID)], arguments)
        } catch {
            return true  // fail open: send, and let Telegram's own limit be the judge
        }
        guard case .integer(let wait) = reply, wait >= 0 else { return false }
        if wait > 0 { usleep(UInt32(min(wait, limits.maxWaitMilliseconds)) * 1000) }
        return true
    }

    /// Runs a script, warning (rate-limited) when Redis fails or refuses.
    func evaluate(_ script: RedisScript, keys: [String], _ arguments: [String]) throws(StateStoreError) -> RedisReply {
        try evaluate(script, keys: keys, bytes: arguments.map { Array($0.utf8) })
    }

    func evaluate(_ script: RedisScript, keys: [String], bytes arguments: [[UInt8]]) throws(StateStoreError) -> RedisReply {
        let reply: RedisReply
        do {
            reply = try connection.evaluate(script, keys: keys, arguments: arguments)
        } catch {
            throw failed(error)
        }
        if case .error(let message) = reply { throw failed(.refused, detail: String(message.prefix(40))) }
        warnings.succeeded("redis", logger: logger)
        return reply
    }

    private func failed(_ error: StateStoreError, detail: String? = nil) -> StateStoreError {
        warnings.failed("redis", error: detail.map { "\(error.shortDescription): \($0)" } ?? error.shortDescription, logger: logger)
        return error
    }

    static func decision(_ reply: RedisReply, claim: Claim) throws(StateStoreError) -> BeginDecision {
        guard case .array(let items) = reply, let kind = items.first?.text else { throw .unexpectedReply }
        func integer(_ index: Int) -> Int64? {
            guard index < items.count, case .integer(let value) = items[index] else { return nil }
            return value
        }
        let seconds = { (milliseconds: Int64?) in Int(((milliseconds ?? 1000) + 999) / 1000) }
        switch kind {
        case "duplicate": return .duplicate
        case "in_progress": return .inProgress(retryAfterSeconds: seconds(integer(1)))
        case "busy": return .busy(retryAfterSeconds: seconds(integer(1)))
        case "limited": return .limited(warn: integer(1) == 1)
        case "ok" where items.count == 1: return .proceed(nil, nil)
        case "ok":
            guard items.count == 4, let id = items[1].text else { throw .unexpectedReply }
            let state: String? = if case .string = items[2] { items[2].text } else { nil }
            return .proceed(claim, Session(internalUserID: id, conversationState: state, isNew: integer(3) == 1))
        default:
            throw .unexpectedReply
        }
    }
}
