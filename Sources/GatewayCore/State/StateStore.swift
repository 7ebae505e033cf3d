/// Per-user state kept outside the responder (Redis in production): update dedupe, the rate
/// limit, sessions, the per-user processing lease, the user's place in the stream and the
/// outbox of what waits to be sent.
///
/// One store per thread: implementations hold a connection and need not be shareable. Every
/// call takes the update's deadline and gives up when it leaves less than a millisecond.
public protocol StateStore {
    /// Decides atomically, in one round trip, whether and how the update is processed: dedupe,
    /// rate limit (before anything may wait), whether the user is busy, session read, create or
    /// refresh, the user's processing lease, and the slot of the gateway's own reply.
    func begin(_ request: BeginRequest, deadline: Deadline) throws(StateStoreError) -> BeginDecision

    /// Marks the update done, applies the state changes it was given (always: a finish never
    /// loses them), releases the user's lease if it is still this update's, admits or keeps the
    /// webhook reply, and keeps the undelivered tail of the answer in the user's outbox.
    func finish(_ completion: Completion, deadline: Deadline) throws(StateStoreError) -> FinishReport

    /// Keeps callback data too long for Telegram (over 64 bytes) for `ttlSeconds` and returns
    /// the short token that replaces it on the button.
    func storeCallbackData(_ data: String, ttlSeconds: Int, deadline: Deadline) throws(StateStoreError) -> String

    /// The data a token stands for, or nil when it is unknown or expired.
    func loadCallbackData(token: String, deadline: Deadline) throws(StateStoreError) -> String?

    /// One step through the subject's outbox, in one round trip: removes `done` from its front
    /// (a call sent, given up on, or unreadable; nothing happens if it is no longer first), then
    /// gives the call now first, having reserved its slot when its chat's window lives with the
    /// subject (a private chat's, with its user) and is free within `maxWaitMilliseconds`.
    func advanceOutbox(
        of subject: StateSubject, after done: [UInt8]?, maxWaitMilliseconds: Int64, deadline: Deadline
    ) throws(StateStoreError) -> OutboxStep

    /// Replaces `send` at the front of the outbox with `updated` (an attempt counted).
    func replaceOutboxHead(of subject: StateSubject, send: PendingSend, with updated: PendingSend, deadline: Deadline) throws(StateStoreError)

    /// Whether the store answers now (the health endpoint, `gatewayctl check-config`).
    func ping() throws(StateStoreError)
}

/// What `advanceOutbox` found first in an outbox.
public enum OutboxStep: Sendable, Equatable {
    /// Nothing waits: the user is no longer held back by an outbox.
    case empty
    /// A call this version cannot read: pass it back as `done` to remove it.
    case unreadable([UInt8])
    case next(PendingSend, slot: OutboxSlot)
}

/// The chat slot of an outbox's first call.
public enum OutboxSlot: Sendable, Equatable {
    /// Not paced (an edit, a callback answer).
    case unpaced
    /// Reserved: send after this many milliseconds.
    case reserved(Int64)
    /// The chat's window lives elsewhere (a group): reserve through the ``OutgoingLimiter``.
    case elsewhere
    /// The window has no slot that soon: come back after about this long (nothing reserved).
    case later(Int64)
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

    /// The subject a hash tag names (`{tg:42}`, `{tgc:-100}`), the inverse of `hashTag`.
    public init?(hashTag: String) {
        if hashTag.hasPrefix("{tg:"), hashTag.hasSuffix("}"), let id = Int64(hashTag.dropFirst(4).dropLast()) {
            self = .user(id)
        } else if hashTag.hasPrefix("{tgc:"), hashTag.hasSuffix("}"), let id = Int64(hashTag.dropFirst(5).dropLast()) {
            self = .chat(id)
        } else {
            return nil
        }
    }

    /// The Redis Cluster hash tag every key of this subject carries, so one script's keys share a slot.
    public var hashTag: String { "\(hashTagOpening)\(id)}" }

    /// What the hash tag opens with, before the id: `{tg:` for a user, `{tgc:` for a chat.
    public var hashTagOpening: StaticString { kind == .user ? "{tg:" : "{tgc:" }

    /// The subject whose keys hold `chatID`'s sending window: a private chat's id is its user's
    /// id, so a private chat's window lives with its user; a group's with the group.
    public static func windowOwner(of chatID: Int64) -> StateSubject {
        chatID > 0 ? .user(chatID) : .chat(chatID)
    }

    /// Whether `chatID`'s window lives with this subject (one script can then reserve it).
    public func ownsWindow(of chatID: Int64) -> Bool {
        Self.windowOwner(of: chatID) == self
    }

    /// The chat whose window lives with this subject: a user's private chat, or the chat itself.
    public var ownChatID: Int64 { id }

    public var description: String { hashTag }
}

public struct BeginRequest: Sendable, Equatable {
    /// Who processes the update: a webhook request (Telegram waits, no waiting allowed) or a
    /// stream worker (the update was deduplicated and rate limited when it was stored, and the
    /// worker is the only one working the user's stream).
    public enum Origin: Sendable, Equatable { case webhook, worker }

    public var updateID: Int64
    public var subject: StateSubject
    /// True when the update goes to a service: it then reads the session, creates one for a new
    /// user, and holds the user's processing lease until `finish`. Otherwise the update is
    /// marked done at once.
    public var needsSession: Bool
    /// The internal id a first-time user gets (a fresh UUID).
    public var newInternalUserID: String
    /// Names this claim (see ``ClaimTokens``): the lease holds it until `finish`.
    public var token: String
    public var origin: Origin
    /// A replay from the dead letters: processed again although the update is done, once per
    /// replay (this is the replay's id).
    public var replay: String?
    /// The gateway's own reply (a route answered without a service) when its chat's window lives
    /// with the subject: its slot is reserved now, or the reply waits in the outbox.
    public var reply: PendingSend?

    public init(
        updateID: Int64, subject: StateSubject, needsSession: Bool, newInternalUserID: String, token: String = "s-test",
        origin: Origin = .webhook, replay: String? = nil, reply: PendingSend? = nil
    ) {
        self.updateID = updateID
        self.subject = subject
        self.needsSession = needsSession
        self.newInternalUserID = newInternalUserID
        self.token = token
        self.origin = origin
        self.replay = replay
        self.reply = reply
    }
}

/// What became of a reply the store was asked to admit.
public enum ReplyAdmission: Sendable, Equatable {
    /// No reply was given.
    case none
    /// Its slot is reserved: send it as the webhook reply.
    case now
    /// The window is full (or the outbox not empty): it waits in the outbox for a worker.
    case kept
}

/// What to do with an update, decided atomically by the store.
public enum BeginDecision: Sendable, Equatable {
    /// Process it. `claim` is set when the update must be finished (it needs a session).
    /// `outboxWaiting`: calls left in the outbox (a worker sends them before anything new).
    case proceed(Claim?, Session?, reply: ReplyAdmission, outboxWaiting: Int)
    /// Already processed: acknowledge, do nothing. `outboxWaiting` as above.
    case duplicate(outboxWaiting: Int)
    /// Another responder is processing this very update (its lease holds for `retryAfterSeconds`).
    case inProgress(retryAfterSeconds: Int)
    /// Webhook: the user is busy (another update holds the lease, or earlier ones wait in the
    /// stream). The store has counted the update as waiting; the caller appends it to the
    /// user's stream and answers at once.
    case deferred
    /// Worker: a webhook request of the same user holds the lease for up to this long; wait.
    case busy(retryAfterMilliseconds: Int64)
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
    /// True when the record of which user the internal id is (for the outbound API) is missing
    /// or older than half a session's life: write it again.
    public var needsIndex: Bool

    public init(internalUserID: String, conversationState: String?, isNew: Bool, needsIndex: Bool = false) {
        self.internalUserID = internalUserID
        self.conversationState = conversationState
        self.isNew = isNew
        self.needsIndex = needsIndex
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

    public var subject: StateSubject
    public var updateID: Int64
    /// The claim `begin` gave (or may have given: a `begin` that timed out on this side may
    /// have run in the store); nil when nothing was claimed, and then only the outbox changes.
    public var claim: Claim?
    public var stateChange: StateChange
    /// An internal id a service supplied, replacing the generated one.
    public var internalUserID: String?
    public var origin: BeginRequest.Origin
    public var replay: String?
    /// The webhook reply, when its chat's window lives with the subject: admitted now, or kept
    /// in the outbox.
    public var reply: PendingSend?
    /// What could not be delivered now, in order: kept in the outbox for a worker.
    public var tail: [PendingSend]
    /// The internal id whose record (which user it is, for the outbound API) the finish
    /// writes with the session (so only with a claim), noting when; nil when none is due.
    public var indexedInternalUserID: String?
    /// A worker about to send the outbox: after keeping the tail, the store also takes its
    /// first call and that call's slot, waiting at most this long (negative: reserve nothing),
    /// as `advanceOutbox(after: nil)` would, in the same round trip (``FinishReport/next``).
    public var advanceWithin: Int64?

    public init(
        subject: StateSubject, updateID: Int64, claim: Claim?, stateChange: StateChange = .keep, internalUserID: String? = nil,
        origin: BeginRequest.Origin = .webhook, replay: String? = nil, reply: PendingSend? = nil, tail: [PendingSend] = []
    ) {
        self.subject = subject
        self.updateID = updateID
        self.claim = claim
        self.stateChange = stateChange
        self.internalUserID = internalUserID
        self.origin = origin
        self.replay = replay
        self.reply = reply
        self.tail = tail
    }

    /// Finishes `claim`.
    public init(claim: Claim, stateChange: StateChange = .keep, internalUserID: String? = nil) {
        self.init(subject: claim.subject, updateID: claim.updateID, claim: claim, stateChange: stateChange, internalUserID: internalUserID)
    }
}

public struct FinishReport: Sendable, Equatable {
    public var reply: ReplyAdmission
    /// Calls in the outbox now: when above 0 a worker must be told (the caller schedules it).
    public var outboxWaiting: Int
    /// False when the user's lease had passed to another update (the state was applied anyway).
    public var leaseWasOurs: Bool
    /// The outbox's first step, when the completion asked for it (``Completion/advanceWithin``).
    public var next: OutboxStep?

    public init(reply: ReplyAdmission = .none, outboxWaiting: Int = 0, leaseWasOurs: Bool = true, next: OutboxStep? = nil) {
        self.reply = reply
        self.outboxWaiting = outboxWaiting
        self.leaseWasOurs = leaseWasOurs
        self.next = next
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
    /// No answer in time: the command timeout, or less than a millisecond left of the deadline.
    public static let timeout = StateStoreError(code: .timeout)
    /// The server answered something the gateway does not understand.
    public static let unexpectedReply = StateStoreError(code: .unexpectedReply)
    /// The server answered with an error (authentication, out of memory, read-only replica…).
    public static let refused = StateStoreError(code: .refused)

    private init(code: Code) { self.code = code }

    public var shortDescription: String { code.rawValue }
    public var description: String { shortDescription }
}
