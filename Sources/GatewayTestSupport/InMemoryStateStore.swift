import GatewayCore
import Synchronization

/// A `StateStore` and `OutgoingLimiter` in memory with the Redis store's semantics (the same
/// decisions in the same order, the same token bucket, the same sliding windows), on a clock
/// the test moves. `failing` makes it behave like an unreachable Redis.
public final class InMemoryStateStore: StateStore, OutgoingLimiter, Sendable {
    private struct State {
        var marks: [String: (value: String, expiresAt: Int64)] = [:]
        var buckets: [StateSubject: TokenBucket] = [:]
        var sessions: [StateSubject: (session: Session, expiresAt: Int64)] = [:]
        var leases: [StateSubject: (token: String, expiresAt: Int64)] = [:]
        /// Per subject: update ids waiting in the stream, and "o" while the outbox holds calls.
        var queued: [StateSubject: Set<String>] = [:]
        var outboxes: [StateSubject: [[UInt8]]] = [:]
        /// Send times per chat, future reservations included; the bot's under `nil`.
        var windows: [Int64?: [Int64]] = [:]
        var failing = false
        /// Bot API sends are paused (a 429) until then.
        var pausedUntil: Int64 = 0
        var tokens = 0
        var callbackData: [String: (data: String, expiresAt: Int64)] = [:]
        /// When each session's internal id was last recorded for the outbound API.
        var indexedAt: [StateSubject: Int64] = [:]
        /// Internal id -> Telegram user id, as last recorded (expiring with a session's life).
        var internalUsers: [String: (user: Int64, expiresAt: Int64)] = [:]
    }

    private let state = Mutex(State())
    public let policy: StatePolicy
    public let clock: ManualClock

    public init(policy: StatePolicy, clock: ManualClock = ManualClock()) {
        self.policy = policy
        self.clock = clock
    }

    /// Moves the store's clock forward.
    public func advance(milliseconds: Int64) {
        clock.advance(milliseconds: milliseconds)
    }

    public var failing: Bool {
        get { state.withLock { $0.failing } }
        set { state.withLock { $0.failing = newValue } }
    }

    /// The session's remaining time to live in milliseconds, or nil when there is none.
    public func sessionTTL(_ subject: StateSubject) -> Int64? {
        let now = clock.milliseconds
        return state.withLock { state in
            guard let entry = state.sessions[subject], entry.expiresAt > now else { return nil }
            return entry.expiresAt - now
        }
    }

    public func session(_ subject: StateSubject) -> Session? {
        let now = clock.milliseconds
        return state.withLock { state in
            guard let entry = state.sessions[subject], entry.expiresAt > now else { return nil }
            return entry.session
        }
    }

    /// What waits in the subject's outbox, in order.
    public func outbox(_ subject: StateSubject) -> [PendingSend] {
        state.withLock { $0.outboxes[subject] ?? [] }.compactMap(PendingSend.decode)
    }

    /// The subject's waiting stream entries (update ids, and "o" for the outbox).
    public func queued(_ subject: StateSubject) -> Set<String> {
        state.withLock { $0.queued[subject] ?? [] }
    }

    /// The holder of the subject's lease, if any.
    public func leaseHolder(_ subject: StateSubject) -> String? {
        let now = clock.milliseconds
        return state.withLock { state in state.leases[subject].flatMap { $0.expiresAt > now ? $0.token : nil } }
    }

    public func begin(_ request: BeginRequest, deadline: Deadline) throws(StateStoreError) -> BeginDecision {
        let policy = policy
        let now = clock.milliseconds
        return try state.withLock { (state: inout State) throws(StateStoreError) -> BeginDecision in
            if state.failing { throw .unavailable }
            let subject = request.subject
            let worker = request.origin == .worker
            let markKey = Self.markKey(subject, request.updateID)
            let mark = state.marks[markKey].flatMap { $0.expiresAt > now ? $0.value : nil }
            if let mark, mark.hasPrefix("done"), request.replay == nil || mark == "done:\(request.replay ?? "")" {
                if worker { state.queued[subject]?.remove(String(request.updateID)) }
                return .duplicate(outboxWaiting: state.outboxes[subject]?.count ?? 0)
            }
            if let mark, !worker, !mark.hasPrefix("done") {
                return .inProgress(retryAfterSeconds: Int(((state.marks[markKey]?.expiresAt ?? now) - now + 999) / 1000))
            }
            var outcome = (allowed: true, warn: false)
            if !worker {
                let (bucket, taken) = TokenBucket.take(
                    state.buckets[subject], now: now, capacity: policy.rateLimitRequests, windowMilliseconds: policy.rateLimitWindowMilliseconds)
                state.buckets[subject] = bucket
                outcome = (taken.allowed, taken.warn)
            }
            let ttl = Int64(policy.sessionTTLSeconds) * 1000
            if let entry = state.sessions[subject], entry.expiresAt > now { state.sessions[subject]?.expiresAt = now + ttl }
            let done = (value: "done", expiresAt: now + Int64(policy.dedupeTTLSeconds) * 1000)
            guard outcome.allowed else {
                state.marks[markKey] = done
                return .limited(warn: outcome.warn)
            }
            let holder = state.leases[subject].flatMap { $0.expiresAt > now ? $0.token : nil }
            if !worker {
                if (request.needsSession && holder != nil && holder != request.token) || !(state.queued[subject] ?? []).isEmpty {
                    state.queued[subject, default: []].insert(String(request.updateID))
                    return .deferred
                }
            } else if let holder, holder != request.token, holder.hasPrefix("s") {
                return .busy(retryAfterMilliseconds: (state.leases[subject]?.expiresAt ?? now) - now)
            }
            guard request.needsSession else {
                state.marks[markKey] = done
                if worker { state.queued[subject]?.remove(String(request.updateID)) }
                let admission = request.reply.map { Self.admit($0, subject: subject, now: now, policy: policy, state: &state) } ?? ReplyAdmission.none
                return .proceed(nil, nil, reply: admission, outboxWaiting: state.outboxes[subject]?.count ?? 0)
            }
            var session: Session
            if let entry = state.sessions[subject], entry.expiresAt > now, !entry.session.internalUserID.isEmpty {
                session = entry.session
                session.isNew = false
            } else {
                let kept = state.sessions[subject].flatMap { $0.expiresAt > now ? $0.session.conversationState : nil }
                session = Session(internalUserID: request.newInternalUserID, conversationState: kept, isNew: true)
                state.indexedAt[subject] = nil
            }
            session.needsIndex = state.indexedAt[subject].map { now - $0 > ttl / 2 } ?? true
            state.sessions[subject] = (session, now + ttl)
            state.marks[markKey] = ("lease:\(request.token)", now + policy.leaseMilliseconds)
            state.leases[subject] = (request.token, now + policy.leaseMilliseconds)
            return .proceed(
                Claim(updateID: request.updateID, subject: subject, token: request.token), session, reply: .none,
                outboxWaiting: state.outboxes[subject]?.count ?? 0)
        }
    }

    public func finish(_ completion: Completion, deadline: Deadline) throws(StateStoreError) -> FinishReport {
        let policy = policy
        let now = clock.milliseconds
        return try state.withLock { (state: inout State) throws(StateStoreError) -> FinishReport in
            if state.failing { throw .unavailable }
            let subject = completion.subject
            var ours = true
            if let claim = completion.claim {
                let doneMark = completion.replay.map { "done:\($0)" } ?? "done"
                state.marks[Self.markKey(subject, completion.updateID)] = (doneMark, now + Int64(policy.dedupeTTLSeconds) * 1000)
                let holder = state.leases[subject].flatMap { $0.expiresAt > now ? $0.token : nil }
                ours = holder == claim.token
                if ours { state.leases[subject] = nil }
                let ttl = Int64(policy.sessionTTLSeconds) * 1000
                var session = state.sessions[subject].flatMap { $0.expiresAt > now ? $0.session : nil }
                switch completion.stateChange {
                case .keep: break
                case .set(let json):
                    session = session ?? Session(internalUserID: "", conversationState: nil, isNew: false)
                    session?.conversationState = json
                case .clear: session?.conversationState = nil
                }
                if let id = completion.internalUserID {
                    session = session ?? Session(internalUserID: id, conversationState: nil, isNew: false)
                    session?.internalUserID = id
                }
                if let session { state.sessions[subject] = (session, now + ttl) }
                if let id = completion.indexedInternalUserID {
                    state.indexedAt[subject] = now
                    state.internalUsers[id] = (subject.id, now + ttl)
                }
            }
            state.queued[subject]?.remove(String(completion.updateID))
            let admission = completion.reply.map { Self.admit($0, subject: subject, now: now, policy: policy, state: &state) } ?? .none
            for send in completion.tail { state.outboxes[subject, default: []].append(send.encoded) }
            let waiting = state.outboxes[subject]?.count ?? 0
            if waiting > 0 { state.queued[subject, default: []].insert("o") }
            let next = completion.advanceWithin.map {
                Self.advance(subject, after: nil, maxWaitMilliseconds: $0, now: now, policy: policy, state: &state)
            }
            return FinishReport(reply: admission, outboxWaiting: waiting, leaseWasOurs: ours, next: next)
        }
    }

    /// The reply's slot now, when nothing waits before it; else it waits in the outbox.
    private static func admit(_ reply: PendingSend, subject: StateSubject, now: Int64, policy: StatePolicy, state: inout State) -> ReplyAdmission {
        if (state.outboxes[subject] ?? []).isEmpty, let chat = reply.pacedChatID {
            let (limit, window) = policy.outgoing.window(of: chat)
            if earliest(&state.windows[chat, default: []], limit: limit, window: window, now: now) == now {
                state.windows[chat, default: []].append(now)
                return .now
            }
        }
        state.outboxes[subject, default: []].append(reply.encoded)
        state.queued[subject, default: []].insert("o")
        return .kept
    }

    public func reserve(chatID: Int64, throughBotAPI: Bool, maxWaitMilliseconds: Int64, deadline: Deadline) -> Int64? {
        let policy = policy
        let now = clock.milliseconds
        return state.withLock { state -> Int64? in
            if state.failing { return 0 }
            let (limit, window) = policy.outgoing.window(of: chatID)
            var at = Self.earliest(&state.windows[chatID, default: []], limit: limit, window: window, now: now)
            let bot = throughBotAPI && policy.outgoing.botMessagesPerSecond > 0
            if throughBotAPI { at = max(at, state.pausedUntil) }
            if bot {
                at = max(at, Self.botEarliest(&state.windows[nil, default: []], outgoing: policy.outgoing, spaced: maxWaitMilliseconds > 0, now: now))
            }
            guard at - now <= maxWaitMilliseconds else { return nil }
            state.windows[chatID, default: []].append(at)
            if bot { state.windows[nil, default: []].append(at) }
            return at - now
        }
    }

    public func reserveBotAPI(afterMilliseconds: Int64, maxWaitMilliseconds: Int64, deadline: Deadline) -> Int64? {
        let policy = policy
        let now = clock.milliseconds
        return state.withLock { state -> Int64? in
            if state.failing { return afterMilliseconds }
            var at = max(now + afterMilliseconds, state.pausedUntil)
            let bot = policy.outgoing.botMessagesPerSecond > 0
            if bot {
                at = max(at, Self.botEarliest(&state.windows[nil, default: []], outgoing: policy.outgoing, spaced: maxWaitMilliseconds > 0, now: now))
            }
            guard at - now <= maxWaitMilliseconds else { return nil }
            if bot { state.windows[nil, default: []].append(at) }
            return at - now
        }
    }

    public var hasBotBudget: Bool { policy.outgoing.botMessagesPerSecond > 0 }

    public func pausedMilliseconds(deadline: Deadline) -> Int64 {
        let now = clock.milliseconds
        return state.withLock { max(0, $0.pausedUntil - now) }
    }

    public func pause(milliseconds: Int64, deadline: Deadline) {
        let now = clock.milliseconds
        state.withLock { $0.pausedUntil = max($0.pausedUntil, now + milliseconds) }
    }

    /// When the next message may go in a sliding window of `limit` per `window` ms.
    /// The bot's next slot: its window, and for a sender that may wait, evenly spaced after
    /// the latest reservation.
    private static func botEarliest(_ times: inout [Int64], outgoing: OutgoingLimits, spaced: Bool, now: Int64) -> Int64 {
        let windowed = earliest(&times, limit: outgoing.botMessagesPerSecond, window: OutgoingLimits.botWindowMilliseconds, now: now)
        guard spaced, let latest = times.max() else { return windowed }
        return max(windowed, latest + outgoing.botSpacingMilliseconds)
    }

    private static func earliest(_ times: inout [Int64], limit: Int, window: Int64, now: Int64) -> Int64 {
        times.removeAll { $0 <= now - window }
        times.sort()
        guard times.count >= limit else { return now }
        return max(now, times[times.count - limit] + window)
    }

    public func advanceOutbox(
        of subject: StateSubject, after done: [UInt8]?, maxWaitMilliseconds: Int64, deadline: Deadline
    ) throws(StateStoreError) -> OutboxStep {
        let policy = policy
        let now = clock.milliseconds
        return try state.withLock { (state: inout State) throws(StateStoreError) -> OutboxStep in
            if state.failing { throw .unavailable }
            return Self.advance(subject, after: done, maxWaitMilliseconds: maxWaitMilliseconds, now: now, policy: policy, state: &state)
        }
    }

    /// The advance script's semantics, for `advanceOutbox` and a `finish` asked to advance.
    private static func advance(
        _ subject: StateSubject, after done: [UInt8]?, maxWaitMilliseconds: Int64, now: Int64, policy: StatePolicy, state: inout State
    ) -> OutboxStep {
        if let done, state.outboxes[subject]?.first == done { state.outboxes[subject]?.removeFirst() }
        guard let first = state.outboxes[subject]?.first else {
            state.queued[subject]?.remove("o")
            return .empty
        }
        guard let send = PendingSend.decode(first) else { return .unreadable(first) }
        guard let chat = send.pacedChatID else { return .next(send, slot: .unpaced) }
        guard chat == subject.ownChatID else { return .next(send, slot: .elsewhere) }
        guard maxWaitMilliseconds >= 0 else { return .next(send, slot: .later(0)) }
        let (limit, window) = policy.outgoing.window(of: chat)
        let at = earliest(&state.windows[chat, default: []], limit: limit, window: window, now: now)
        guard at - now <= maxWaitMilliseconds else { return .next(send, slot: .later(at - now)) }
        state.windows[chat, default: []].append(at)
        return .next(send, slot: .reserved(at - now))
    }

    /// Appends `calls` to the subject's outbox unless `marker` was used before (one job's calls
    /// go to a recipient once): the Redis keep script's semantics.
    public func keepOnce(_ calls: [PendingSend], of subject: StateSubject, marker: String) throws(StateStoreError) {
        try state.withLock { (state: inout State) throws(StateStoreError) in
            if state.failing { throw .unavailable }
            guard state.marks[marker] == nil else { return }
            state.marks[marker] = ("1", Int64.max)
            guard !calls.isEmpty else { return }
            state.outboxes[subject, default: []].append(contentsOf: calls.map(\.encoded))
            state.queued[subject, default: []].insert("o")
        }
    }

    /// The internal id of a live session, as the outbound API resolves it.
    public func liveInternalUserID(of subject: StateSubject) -> String? {
        session(subject)?.internalUserID
    }

    /// The user an internal id was last recorded for, while the record lives.
    public func recordedUser(of internalUserID: String) -> Int64? {
        let now = clock.milliseconds
        return state.withLock { $0.internalUsers[internalUserID].flatMap { $0.expiresAt > now ? $0.user : nil } }
    }

    public func replaceOutboxHead(of subject: StateSubject, send: PendingSend, with updated: PendingSend, deadline: Deadline) throws(StateStoreError)
    {
        try state.withLock { (state: inout State) throws(StateStoreError) in
            if state.failing { throw .unavailable }
            if state.outboxes[subject]?.first == send.encoded { state.outboxes[subject]?[0] = updated.encoded }
        }
    }

    public func ping() throws(StateStoreError) {
        if failing { throw .unavailable }
    }

    public func storeCallbackData(_ data: String, ttlSeconds: Int, deadline: Deadline) throws(StateStoreError) -> String {
        let now = clock.milliseconds
        return try state.withLock { (state: inout State) throws(StateStoreError) -> String in
            if state.failing { throw .unavailable }
            state.tokens += 1
            let token = "cb\(state.tokens)"
            state.callbackData[token] = (data, now + Int64(ttlSeconds) * 1000)
            return token
        }
    }

    public func loadCallbackData(token: String, deadline: Deadline) throws(StateStoreError) -> String? {
        let now = clock.milliseconds
        return try state.withLock { (state: inout State) throws(StateStoreError) -> String? in
            if state.failing { throw .unavailable }
            guard let entry = state.callbackData[token], entry.expiresAt > now else { return nil }
            return entry.data
        }
    }

    private static func markKey(_ subject: StateSubject, _ updateID: Int64) -> String {
        "\(subject.hashTag):update:\(updateID)"
    }
}
