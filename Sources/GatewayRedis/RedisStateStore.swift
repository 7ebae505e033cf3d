import GatewayCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The `StateStore` and `OutgoingLimiter` on Redis through hiredis: one `FCALL` per decision,
/// on this thread's own connection, within the update's deadline. Failures throw (the pipeline
/// then fails open) and are warned about, rate-limited.
public final class RedisStateStore: StateStore, OutgoingLimiter {
    let connection: RedisConnection
    let policy: StatePolicy
    private let warnings: DependencyWarnings
    private let logger: Logger
    /// Window members: unique per store by a counter, across stores by the random prefix.
    private var members = 0
    private let memberPrefix: String
    /// The begin and finish scripts with the policy's numbers in them.
    private let beginScript: RedisScript
    private let finishScript: RedisScript

    /// The process's view of the bot-wide budget, shared by its threads' stores.
    private let botBudget: BotBudgetGate

    /// `botBudget`: the process's (one per store when not given).
    public init(
        config: GatewayConfig.RedisSettings, policy: StatePolicy, warnings: DependencyWarnings, logger: Logger,
        clock: @escaping @Sendable () -> UInt64, botBudget: BotBudgetGate? = nil
    ) {
        connection = RedisConnection(settings: .init(config), clock: clock)
        self.botBudget = botBudget ?? BotBudgetGate(clock: clock)
        self.policy = policy
        self.warnings = warnings
        self.logger = logger
        var generator = SystemRandomNumberGenerator()
        memberPrefix = String(generator.next() as UInt64, radix: 36) + "-\(getpid())-"
        beginScript = RedisScripts.begin(policy)
        finishScript = RedisScripts.finish(policy)
    }

    public func begin(_ request: BeginRequest, deadline: Deadline) throws(StateStoreError) -> BeginDecision {
        let subject = request.subject
        let reply = request.reply?.encoded ?? []
        var call = ScriptCall(beginScript, keys: RedisScripts.beginKeys.count, arguments: 6, capacity: 6 * 48 + 128 + reply.count)
        call.keys(of: subject, RedisScripts.beginKeys, updateID: request.updateID)
        call.argument(request.token)
        // Origin, session, and the reply's window.
        let flags = (
            request.origin == .webhook ? UInt8(ascii: "s") : UInt8(ascii: "w"), request.needsSession ? UInt8(ascii: "1") : UInt8(ascii: "0"),
            Self.windowFlag(of: request.reply?.pacedChatID ?? 0)
        )
        withUnsafeBytes(of: flags) { call.argument($0.assumingMemoryBound(to: UInt8.self)) }
        call.argument(request.updateID)
        call.argument(request.newInternalUserID)
        call.argument(request.replay ?? "")
        call.argument(reply)
        let answer = try evaluate(call, deadline: deadline)
        do {
            return try Self.decision(answer, claim: Claim(updateID: request.updateID, subject: request.subject, token: request.token))
        } catch {
            throw failed(error)
        }
    }

    public func finish(_ completion: Completion, deadline: Deadline) throws(StateStoreError) -> FinishReport {
        var action: StaticString = "keep"
        var json = ""
        switch completion.stateChange {
        case .keep: break
        case .set(let state): (action, json) = ("set", state)
        case .clear: action = "clear"
        }
        let subject = completion.subject
        // The internal id's record goes with the session: on one Redis in this call (its key
        // is another hash tag's); in a cluster, where one call names one slot, in a command of
        // its own first, the session noting it only once it is written.
        var recordKey: String?
        var indexed = false
        if completion.claim != nil, let id = completion.indexedInternalUserID {
            if connection.isCluster {
                indexed = record(id, user: subject.id, deadline: deadline)
            } else {
                recordKey = OutboundKeys.internalUser(id)
                indexed = true
            }
        }
        let encodedReply = completion.reply?.encoded ?? []
        var capacity = 7 * 48 + 256 + json.utf8.count + encodedReply.count
        for call in completion.tail { capacity += call.encoded.count + 32 }
        var call = ScriptCall(
            finishScript, keys: RedisScripts.finishKeys.count + (recordKey == nil ? 0 : 1), arguments: 10 + completion.tail.count,
            capacity: capacity)
        call.keys(of: subject, RedisScripts.finishKeys, updateID: completion.updateID)
        if let recordKey { call.key(recordKey) }
        call.argument(completion.claim?.token ?? "")
        let flags = (
            Self.windowFlag(of: completion.reply?.pacedChatID ?? 0), indexed ? UInt8(ascii: "1") : UInt8(ascii: "0"),
            Self.windowFlag(of: subject.ownChatID)
        )
        withUnsafeBytes(of: flags) { call.argument($0.assumingMemoryBound(to: UInt8.self)) }
        call.argument(UnsafeBufferPointer(start: action.utf8Start, count: action.utf8CodeUnitCount))
        call.argument(json)
        call.argument(completion.internalUserID ?? "")
        call.argument(completion.replay ?? "")
        call.argument(completion.updateID)
        call.argument(encodedReply)
        if let within = completion.advanceWithin { call.argument(within) } else { call.argument("") }
        // The subject's own chat: the outbox's, and the user the record names.
        if completion.advanceWithin != nil || recordKey != nil { call.argument(subject.ownChatID) } else { call.argument("") }
        for pending in completion.tail { call.argument(pending.encoded) }
        let reply = try evaluate(call, deadline: deadline)
        // Admitted now into an empty outbox, the lease ours: the admission alone.
        if case .string = reply, let admission = Self.admission(reply) { return FinishReport(reply: admission, outboxWaiting: 0, leaseWasOurs: true) }
        guard case .array(let items) = reply, items.count == 3 || items.count == 6, let admission = Self.admission(items[0]),
            case .integer(let waiting) = items[1], case .integer(let ours) = items[2]
        else { throw failed(.unexpectedReply) }
        let next: OutboxStep? = if items.count == 6 { try step(items[3...]) } else { nil }
        return FinishReport(reply: admission, outboxWaiting: Int(waiting), leaseWasOurs: ours == 1, next: next)
    }

    /// Records which user an internal id is, for a session's life; false when it was not written.
    private func record(_ internalUserID: String, user: Int64, deadline: Deadline) -> Bool {
        let arguments = [
            Array("SET".utf8), Array(OutboundKeys.internalUser(internalUserID).utf8), Self.bytes(user), Array("EX".utf8),
            Self.bytes(policy.sessionTTLSeconds),
        ]
        return (try? command(arguments, deadline: deadline)).map { if case .status = $0 { true } else { false } } ?? false
    }

    public func reserve(chatID: Int64, throughBotAPI: Bool, maxWaitMilliseconds: Int64, deadline: Deadline) -> Int64? {
        let (limit, span) = policy.outgoing.window(of: chatID)
        do {
            let reply = try evaluate(
                RedisScripts.reserveChat, keys: [RedisScripts.windowKey(of: chatID)],
                arguments: [Self.bytes(limit), Self.bytes(span), Self.bytes(max(0, maxWaitMilliseconds))], deadline: deadline)
            guard case .integer(let wait) = reply else { throw failed(.unexpectedReply) }
            let chatWait = wait >= 0 ? wait : nil
            guard let chatWait, throughBotAPI else { return chatWait }
            // The bot-wide budget (without one, only a 429's pause), no earlier than the chat's
            // slot. Refused, the chat's slot stays reserved unused: the chat is paced a little
            // more for one window.
            return reserveBotAPI(afterMilliseconds: chatWait, maxWaitMilliseconds: maxWaitMilliseconds, deadline: deadline)
        } catch {
            return 0  // fail open: send, and let Telegram's own limit be the judge
        }
    }

    /// One call to the budget's slot per send admitted: a send the process already knows cannot
    /// get a slot in time is refused without one, and without a budget (OUTGOING_PER_SECOND=0)
    /// only the pause is read (one PTTL: a 429 stops every process's sends at once).
    public func reserveBotAPI(afterMilliseconds: Int64, maxWaitMilliseconds: Int64, deadline: Deadline) -> Int64? {
        guard policy.outgoing.botMessagesPerSecond > 0 else {
            let wait = max(afterMilliseconds, pausedMilliseconds(deadline: deadline))
            return wait <= max(0, maxWaitMilliseconds) ? wait : nil
        }
        guard !botBudget.refuses(maxWaitMilliseconds: maxWaitMilliseconds) else { return nil }
        do {
            switch try reserveSlot(
                [RedisScripts.botWindowKey, RedisScripts.botPauseKey], limit: policy.outgoing.botMessagesPerSecond,
                span: OutgoingLimits.botWindowMilliseconds, maxWait: maxWaitMilliseconds, member: nextMember(), after: afterMilliseconds,
                spacing: maxWaitMilliseconds > 0 ? policy.outgoing.botSpacingMilliseconds : 0, deadline: deadline)
            {
            case .reserved(let wait):
                return wait
            case .refused(let soonest):
                botBudget.noteRefused(soonestMilliseconds: soonest)
                return nil
            }
        } catch {
            return afterMilliseconds  // fail open
        }
    }

    public func pause(milliseconds: Int64, deadline: Deadline) {
        _ = try? evaluate(RedisScripts.pause, keys: [RedisScripts.botPauseKey], arguments: [Self.bytes(max(1, milliseconds))], deadline: deadline)
    }

    public var hasBotBudget: Bool { policy.outgoing.botMessagesPerSecond > 0 }

    public func pausedMilliseconds(deadline: Deadline) -> Int64 {
        guard case .integer(let left)? = try? command([Array("PTTL".utf8), Array(RedisScripts.botPauseKey.utf8)], deadline: deadline) else {
            return 0
        }
        return max(0, left)
    }

    private enum Slot {
        case reserved(waitMilliseconds: Int64)
        /// No slot within the longest wait; none sooner than this for any send.
        case refused(soonestMilliseconds: Int64)
    }

    private func reserveSlot(
        _ keys: [String], limit: Int, span: Int64, maxWait: Int64, member: [UInt8], after: Int64, spacing: Int64, deadline: Deadline
    ) throws(StateStoreError) -> Slot {
        let reply = try evaluate(
            RedisScripts.reserveBot, keys: keys,
            arguments: [Self.bytes(limit), Self.bytes(span), Self.bytes(max(0, maxWait)), member, Self.bytes(after), Self.bytes(spacing)],
            deadline: deadline)
        guard case .integer(let wait) = reply else { throw failed(.unexpectedReply) }
        return wait >= 0 ? .reserved(waitMilliseconds: wait) : .refused(soonestMilliseconds: -wait - 1)
    }

    public func advanceOutbox(
        of subject: StateSubject, after done: [UInt8]?, maxWaitMilliseconds: Int64, deadline: Deadline
    ) throws(StateStoreError) -> OutboxStep {
        let keys = StateSubjectKeys(subject: subject, updateID: 0)
        let (limit, span) = policy.outgoing.window(of: subject.ownChatID)
        let reply = try evaluate(
            RedisScripts.advanceOutbox, keys: [keys.outbox, keys.queued, keys.pace],
            arguments: [done ?? [], Self.bytes(subject.ownChatID), Self.bytes(limit), Self.bytes(span), Self.bytes(maxWaitMilliseconds)],
            deadline: deadline)
        guard case .array(let items) = reply else { throw failed(.unexpectedReply) }
        return try step(items[...])
    }

    /// An outbox step as the Lua `outbox_step` answers it: `[]` or `[false, …]` (empty), or
    /// the first call, its slot's kind and the wait.
    private func step(_ items: ArraySlice<RedisReply>) throws(StateStoreError) -> OutboxStep {
        guard case .string(let bytes)? = items.first else { return .empty }
        guard let send = PendingSend.decode(bytes) else { return .unreadable(bytes) }
        let kind = items.dropFirst().first?.text
        let wait: Int64 = if let third = items.dropFirst(2).first, case .integer(let value) = third { value } else { 0 }
        switch kind {
        case "unpaced": return .next(send, slot: .unpaced)
        case "elsewhere": return .next(send, slot: .elsewhere)
        case "reserved": return .next(send, slot: .reserved(wait))
        case "later": return .next(send, slot: .later(wait))
        default: throw failed(.unexpectedReply)
        }
    }

    public func replaceOutboxHead(of subject: StateSubject, send: PendingSend, with updated: PendingSend, deadline: Deadline) throws(StateStoreError)
    {
        let keys = StateSubjectKeys(subject: subject, updateID: 0)
        _ = try evaluate(RedisScripts.replaceOutboxHead, keys: [keys.outbox], arguments: [send.encoded, updated.encoded], deadline: deadline)
    }

    /// Connects (loading the scripts) and pings: what `gatewayctl check-config` reports.
    public func ping() throws(StateStoreError) {
        guard case .status("PONG") = try connection.command("PING") else { throw .unexpectedReply }
    }

    public func storeCallbackData(_ data: String, ttlSeconds: Int, deadline: Deadline) throws(StateStoreError) -> String {
        var generator = SystemRandomNumberGenerator()
        let token = String(generator.next() as UInt64, radix: 36) + String(generator.next() as UInt64, radix: 36)
        let reply: RedisReply
        do {
            reply = try connection.command(
                ["SET", RedisScripts.callbackDataKey(token), data, "EX", String(ttlSeconds)].map { Array($0.utf8) }, deadline: deadline)
        } catch {
            throw failed(error)
        }
        guard case .status = reply else { throw failed(.refused) }
        return token
    }

    public func loadCallbackData(token: String, deadline: Deadline) throws(StateStoreError) -> String? {
        guard token.count <= 40, token.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else { return nil }
        let reply: RedisReply
        do {
            reply = try connection.command([Array("GET".utf8), Array(RedisScripts.callbackDataKey(token).utf8)], deadline: deadline)
        } catch {
            throw failed(error)
        }
        switch reply {
        case .null: return nil
        case .string: return reply.text
        default: throw failed(.unexpectedReply)
        }
    }

    /// Sends a command, warning (rate-limited) when Redis fails. Error replies are returned.
    func command(_ arguments: [[UInt8]], deadline: Deadline) throws(StateStoreError) -> RedisReply {
        do {
            return try connection.command(arguments, deadline: deadline)
        } catch {
            throw failed(error)
        }
    }

    /// One command sent to the node that holds `key` (for a command that names none).
    func command(_ arguments: [[UInt8]], deadline: Deadline, routedBy key: [UInt8], allowance: Double = 0) throws(StateStoreError) -> RedisReply {
        do {
            return try connection.command(arguments, deadline: deadline, routedBy: key, allowance: allowance)
        } catch {
            throw failed(error)
        }
    }

    /// Sends commands in one round trip, warning (rate-limited) when Redis fails.
    func commands(_ commands: [[[UInt8]]], deadline: Deadline) throws(StateStoreError) -> [RedisReply] {
        guard !commands.isEmpty else { return [] }
        do {
            return try connection.pipeline(commands, deadline: deadline)
        } catch {
            throw failed(error)
        }
    }

    /// Runs a script once per call in one round trip; any error reply fails them all.
    func evaluateAll(_ script: RedisScript, calls: [(keys: [String], arguments: [[UInt8]])], deadline: Deadline) throws(StateStoreError)
        -> [RedisReply]
    {
        let replies: [RedisReply]
        do {
            replies = try connection.evaluateAll(calls.map { ScriptCall(script, keys: $0.keys, arguments: $0.arguments) }, deadline: deadline)
        } catch {
            throw failed(error)
        }
        if case .error(let message)? = replies.first(where: { if case .error = $0 { true } else { false } }) {
            throw failed(.refused, detail: String(message.prefix(40)))
        }
        warnings.succeeded("redis", logger: logger)
        return replies
    }

    /// Runs a script, warning (rate-limited) when Redis fails or refuses.
    func evaluate(_ script: RedisScript, keys: [String], arguments: [[UInt8]], deadline: Deadline) throws(StateStoreError) -> RedisReply {
        try evaluate(ScriptCall(script, keys: keys, arguments: arguments), deadline: deadline)
    }

    func evaluate(_ call: ScriptCall, deadline: Deadline) throws(StateStoreError) -> RedisReply {
        let reply: RedisReply
        do {
            reply = try connection.evaluate(call, deadline: deadline)
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

    private func nextMember() -> [UInt8] {
        members &+= 1
        return Array((memberPrefix + String(members)).utf8)
    }

    static func bytes(_ value: some BinaryInteger) -> [UInt8] { Array(String(value).utf8) }

    /// The scripts' name for `chatID`'s window, whose numbers are their constants: `g` a group's,
    /// `p` a private chat's, told apart as `OutgoingLimits.window(of:)` does.
    static func windowFlag(of chatID: Int64) -> UInt8 { chatID < 0 ? UInt8(ascii: "g") : UInt8(ascii: "p") }

    static func admission(_ reply: RedisReply) -> ReplyAdmission? {
        switch reply.text {
        case "none": ReplyAdmission.none
        case "now": .now
        case "kept": .kept
        default: nil
        }
    }

    static func decision(_ reply: RedisReply, claim: Claim) throws(StateStoreError) -> BeginDecision {
        // Done with nothing in the outbox: the reply's admission alone.
        if case .string = reply, let admission = admission(reply) { return .proceed(nil, nil, reply: admission, outboxWaiting: 0) }
        guard case .array(let items) = reply, let kind = items.first?.text else { throw .unexpectedReply }
        func integer(_ index: Int) -> Int64? {
            guard index < items.count, case .integer(let value) = items[index] else { return nil }
            return value
        }
        switch kind {
        case "duplicate": return .duplicate(outboxWaiting: Int(integer(1) ?? 0))
        case "in_progress": return .inProgress(retryAfterSeconds: Int(((integer(1) ?? 1000) + 999) / 1000))
        case "limited": return .limited(warn: integer(1) == 1)
        case "deferred": return .deferred
        case "busy": return .busy(retryAfterMilliseconds: max(1, integer(1) ?? 100))
        case "done":
            guard items.count == 3, let admission = admission(items[1]) else { throw .unexpectedReply }
            return .proceed(nil, nil, reply: admission, outboxWaiting: Int(integer(2) ?? 0))
        case "claimed":
            guard items.count == 6, let id = items[1].text else { throw .unexpectedReply }
            let state: String? = if case .string = items[2] { items[2].text } else { nil }
            return .proceed(
                claim, Session(internalUserID: id, conversationState: state, isNew: integer(3) == 1, needsIndex: integer(5) == 1),
                reply: .none, outboxWaiting: Int(integer(4) ?? 0))
        default:
            throw .unexpectedReply
        }
    }
}
