import GatewayCore
import Synchronization

/// A `StateStore` in memory with the Redis store's semantics (the same decisions in the same
/// order, the same token bucket), on a clock the test moves. `failing` makes it behave like an
/// unreachable Redis.
public final class InMemoryStateStore: StateStore, Sendable {
    private struct State {
        var now: Int64 = 1_000_000
        var marks: [String: (value: String, expiresAt: Int64)] = [:]
        var buckets: [StateSubject: TokenBucket] = [:]
        var sessions: [StateSubject: (session: Session, expiresAt: Int64)] = [:]
        var leases: [StateSubject: (token: String, expiresAt: Int64)] = [:]
        var failing = false
        var tokens = 0
        var callbackData: [String: (data: String, expiresAt: Int64)] = [:]
    }

    private let state = Mutex(State())
    public let policy: StatePolicy

    public init(policy: StatePolicy) {
        self.policy = policy
    }

    /// Moves the store's clock forward.
    public func advance(milliseconds: Int64) {
        state.withLock { $0.now += milliseconds }
    }

    public var failing: Bool {
        get { state.withLock { $0.failing } }
        set { state.withLock { $0.failing = newValue } }
    }

    /// The session's remaining time to live in milliseconds, or nil when there is none.
    public func sessionTTL(_ subject: StateSubject) -> Int64? {
        state.withLock { state in
            guard let entry = state.sessions[subject], entry.expiresAt > state.now else { return nil }
            return entry.expiresAt - state.now
        }
    }

    public func session(_ subject: StateSubject) -> Session? {
        state.withLock { state in
            guard let entry = state.sessions[subject], entry.expiresAt > state.now else { return nil }
            return entry.session
        }
    }

    public func begin(_ request: BeginRequest) throws(StateStoreError) -> BeginDecision {
        let policy = policy
        return try state.withLock { (state: inout State) throws(StateStoreError) -> BeginDecision in
            if state.failing { throw .unavailable }
            let now = state.now
            let markKey = "\(request.subject.hashTag):update:\(request.updateID)"
            if let mark = state.marks[markKey], mark.expiresAt > now {
                if mark.value == "done", !request.replay { return .duplicate }
                if !request.queued { return .inProgress(retryAfterSeconds: Int((mark.expiresAt - now + 999) / 1000)) }
            }
            if request.needsSession, !request.queued, let lease = state.leases[request.subject], lease.expiresAt > now {
                return .busy(retryAfterSeconds: Int((lease.expiresAt - now + 999) / 1000))
            }
            var outcome = (allowed: true, warn: false)
            if !request.queued {
                let (bucket, taken) = TokenBucket.take(
                    state.buckets[request.subject], now: now, capacity: policy.rateLimitRequests,
                    windowMilliseconds: policy.rateLimitWindowMilliseconds)
                state.buckets[request.subject] = bucket
                outcome = (taken.allowed, taken.warn)
            }
            let ttl = Int64(policy.sessionTTLSeconds) * 1000
            if let entry = state.sessions[request.subject], entry.expiresAt > now {
                state.sessions[request.subject]?.expiresAt = now + ttl
            }
            let done = (value: "done", expiresAt: now + Int64(policy.dedupeTTLSeconds) * 1000)
            guard outcome.allowed else {
                state.marks[markKey] = done
                return .limited(warn: outcome.warn)
            }
            guard request.needsSession else {
                state.marks[markKey] = done
                return .proceed(nil, nil)
            }
            var session: Session
            if let entry = state.sessions[request.subject], entry.expiresAt > now {
                session = entry.session
                session.isNew = false
            } else {
                session = Session(internalUserID: request.newInternalUserID, conversationState: nil, isNew: true)
            }
            state.sessions[request.subject] = (session, now + ttl)
            state.tokens += 1
            let token = "token-\(state.tokens)"
            state.marks[markKey] = ("lease:\(token)", now + policy.leaseMilliseconds)
            state.leases[request.subject] = (token, now + policy.leaseMilliseconds)
            return .proceed(Claim(updateID: request.updateID, subject: request.subject, token: token), session)
        }
    }

    public func ping() throws(StateStoreError) {
        if failing { throw .unavailable }
    }

    public func storeCallbackData(_ data: String, ttlSeconds: Int) throws(StateStoreError) -> String {
        try state.withLock { (state: inout State) throws(StateStoreError) -> String in
            if state.failing { throw .unavailable }
            state.tokens += 1
            let token = "cb\(state.tokens)"
            state.callbackData[token] = (data, state.now + Int64(ttlSeconds) * 1000)
            return token
        }
    }

    public func loadCallbackData(token: String) throws(StateStoreError) -> String? {
        try state.withLock { (state: inout State) throws(StateStoreError) -> String? in
            if state.failing { throw .unavailable }
            guard let entry = state.callbackData[token], entry.expiresAt > state.now else { return nil }
            return entry.data
        }
    }

    public func finish(_ completion: Completion) throws(StateStoreError) {
        let policy = policy
        try state.withLock { (state: inout State) throws(StateStoreError) in
            if state.failing { throw .unavailable }
            let now = state.now
            let claim = completion.claim
            let markKey = "\(claim.subject.hashTag):update:\(claim.updateID)"
            if let mark = state.marks[markKey], mark.expiresAt > now, mark.value == "lease:\(claim.token)" {
                state.marks[markKey] = ("done", now + Int64(policy.dedupeTTLSeconds) * 1000)
            }
            guard let lease = state.leases[claim.subject], lease.expiresAt > now, lease.token == claim.token else { return }
            state.leases[claim.subject] = nil
            guard var entry = state.sessions[claim.subject], entry.expiresAt > now else { return }
            switch completion.stateChange {
            case .keep: break
            case .set(let json): entry.session.conversationState = json
            case .clear: entry.session.conversationState = nil
            }
            if let id = completion.internalUserID { entry.session.internalUserID = id }
            entry.expiresAt = now + Int64(policy.sessionTTLSeconds) * 1000
            state.sessions[claim.subject] = entry
        }
    }
}
