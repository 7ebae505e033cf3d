/// Per-user state kept outside the responder (Redis in production): update dedupe, the rate
/// limit, sessions and the per-user processing lease.
///
/// One store per thread: implementations hold a connection and need not be shareable.
public protocol StateStore {
    /// Claims the update and applies everything that must happen atomically before it is
    /// processed: dedupe, rate limit, session read/create/refresh and the user's processing lease.
    func begin(_ request: BeginRequest) throws(StateStoreError) -> BeginDecision

    /// Marks a claimed update done, releases the user's lease and applies state changes.
    func finish(_ completion: Completion) throws(StateStoreError)

    /// Keeps callback data too long for Telegram (over 64 bytes) for `ttlSeconds` and returns
    /// the short token that replaces it on the button.
    func storeCallbackData(_ data: String, ttlSeconds: Int) throws(StateStoreError) -> String

    /// The data a token stands for, or nil when it is unknown or expired.
    func loadCallbackData(token: String) throws(StateStoreError) -> String?

    /// Whether the store answers now (the health endpoint, `gatewayctl check-config`).
    func ping() throws(StateStoreError)
}

/// Whose state an update touches: its user, or its chat where there is no user.
public struct StateSubject: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case user, chat }
    public let kind: Kind
    public let id: Int64

    public static func user(_ id: Int64) -> StateSubject { StateSubject(kind: .user, id: id) }
    public static func chat(_ id: Int64) -> StateSubject { StateSubject(kind: .chat, id: id) }

    /// The subject of `update`, if it has one.
    public init?(_ update: Update) {
        if let user = update.user { self = .user(user.id) } else if let chat = update.chat { self = .chat(chat.id) } else { return nil }
    }

    private init(kind: Kind, id: Int64) {
        self.kind = kind
        self.id = id
    }

    /// The Redis Cluster hash tag every key of this subject carries, so one script's keys share a slot.
    public var hashTag: String {
        switch kind {
        case .user: "{tg:\(id)}"
        case .chat: "{tgc:\(id)}"
        }
    }

    public var description: String { hashTag }
}

public struct BeginRequest: Sendable, Equatable {
    public var updateID: Int64
    public var subject: StateSubject
    /// True when the update goes to a service: it then reads the session, creates one for a new
    /// user, and holds the user's processing lease until `finish`. Otherwise the update is
    /// marked done at once.
    public var needsSession: Bool
    /// The internal id a first-time user gets (a fresh UUID).
    public var newInternalUserID: String
    /// Queue mode's worker: the update was deduplicated and rate limited when it was enqueued,
    /// and its partition's worker is the only one processing the user's updates, so the rate
    /// limit is skipped and leases left by a worker that died are taken over.
    public var queued: Bool
    /// A replay from the dead letters: processed again although the update is marked done.
    public var replay = false

    public init(updateID: Int64, subject: StateSubject, needsSession: Bool, newInternalUserID: String, queued: Bool = false) {
        self.queued = queued
        self.updateID = updateID
        self.subject = subject
        self.needsSession = needsSession
        self.newInternalUserID = newInternalUserID
    }
}

/// What to do with an update, decided atomically by the store.
public enum BeginDecision: Sendable, Equatable {
    /// Process it. `claim` is set when the update must be finished (it needs a session).
    case proceed(Claim?, Session?)
    /// Already processed: acknowledge, do nothing.
    case duplicate
    /// Another responder is processing this very update (its lease holds for `retryAfterSeconds`).
    case inProgress(retryAfterSeconds: Int)
    /// Another update of the same user is being processed and did not finish within the wait.
    case busy(retryAfterSeconds: Int)
    /// Over the user's rate limit. `warn` is true at most once per window: then tell the user.
    case limited(warn: Bool)
}

/// A user's session: who they are inside, and where their conversation stands.
public struct Session: Sendable, Equatable {
    public var internalUserID: String
    /// The conversation state as the services wrote it (a small JSON object), if any.
    public var conversationState: String?
    /// True when this update created the session.
    public var isNew: Bool

    public init(internalUserID: String, conversationState: String?, isNew: Bool) {
        self.internalUserID = internalUserID
        self.conversationState = conversationState
        self.isNew = isNew
    }
}

/// Proof that this responder holds an update's lease and its user's processing lease.
public struct Claim: Sendable, Equatable {
    public let updateID: Int64
    public let subject: StateSubject
    public let token: String

    public init(updateID: Int64, subject: StateSubject, token: String) {
        self.updateID = updateID
        self.subject = subject
        self.token = token
    }
}

public struct Completion: Sendable, Equatable {
    public enum StateChange: Sendable, Equatable {
        case keep
        case set(String)
        case clear
    }

    public var claim: Claim
    public var stateChange: StateChange
    /// An internal id a service supplied, replacing the generated one.
    public var internalUserID: String?

    public init(claim: Claim, stateChange: StateChange = .keep, internalUserID: String? = nil) {
        self.claim = claim
        self.stateChange = stateChange
        self.internalUserID = internalUserID
    }
}

/// Why the store could not answer. The gateway then fails open: the update is routed without
/// rate limit, session or dedupe.
public struct StateStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Code: String, Sendable {
        case unavailable, timeout
        case unexpectedReply = "unexpected_reply"
        case refused
    }

    private let code: Code

    /// Not connected: refused, unreachable, or backing off after a failure.
    public static let unavailable = StateStoreError(code: .unavailable)
    public static let timeout = StateStoreError(code: .timeout)
    /// The server answered something the gateway does not understand.
    public static let unexpectedReply = StateStoreError(code: .unexpectedReply)
    /// The server answered with an error (authentication, out of memory, read-only replica…).
    public static let refused = StateStoreError(code: .refused)

    private init(code: Code) { self.code = code }

    public var shortDescription: String { code.rawValue }
    public var description: String { shortDescription }
}
