/// An outbound job's id: the partition whose stream fans it out, and a part unique to it,
/// `P-r…` (random) or `P-k…` (derived from an idempotency key, so the same key finds the same
/// job). The partition is in the id, so its status is found without a lookup.
public struct OutboundJobID: Hashable, Sendable, CustomStringConvertible {
    public let partition: Int
    public let description: String

    /// Parses an id as the API gave it; nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: "-", maxSplits: 1)
        guard parts.count == 2, parts[0].count <= 5, let partition = Int(parts[0]), partition >= 0, let kind = parts[1].first,
            kind == "r" || kind == "k", (2...33).contains(parts[1].count),
            parts[1].dropFirst().allSatisfy({ $0.isHexDigit && ($0.isNumber || $0.isLowercase) })
        else { return nil }
        self.partition = partition
        description = text
    }

    private init(partition: Int, unique: String) {
        self.partition = partition
        description = "\(partition)-\(unique)"
    }

    /// A fresh id in one of `partitions`.
    public static func random(partitions: Int) -> OutboundJobID {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        return OutboundJobID(partition: Int(high % UInt64(max(1, partitions))), unique: "r" + Digits.hex(high) + Digits.hex(low))
    }

    /// The id a key always gives: two 64-bit FNV-1a hashes of it (not cryptographic: the keys
    /// come from the bot's own services, and a collision needs 2^64 keys).
    public static func derived(fromKey key: String, partitions: Int) -> OutboundJobID {
        let first = FNV1a.hash(key.utf8)
        let second = FNV1a.hash(key.utf8, basis: 0x84222325_cbf29ce4)
        return OutboundJobID(partition: Int(first % UInt64(max(1, partitions))), unique: "k" + Digits.hex(first) + Digits.hex(second))
    }
}

/// A Bot API call without its chat: the same message for every recipient of a job.
public struct CallTemplate: Sendable, Equatable {
    public let name: String
    /// The call's JSON parameters without `chat_id`.
    public let parameters: [UInt8]

    public init(name: String, parameters: [UInt8]) {
        self.name = name
        self.parameters = parameters
    }

    /// A `sendMessage` template from a method made for chat 0 (its `chat_id` is taken out).
    init?(_ method: BotMethod) {
        guard case .sendMessage = method else { return nil }
        let prefix = Array(#"{"chat_id":0,"#.utf8)
        let parameters = method.parameters
        guard parameters.starts(with: prefix) else { return nil }
        self.init(name: method.name, parameters: [UInt8(ascii: "{")] + parameters.dropFirst(prefix.count))
    }

    /// The call for `chat`.
    public func call(to chat: Int64) -> BotCall {
        BotCall(name: name, parameters: Array(#"{"chat_id":\#(chat),"#.utf8) + parameters.dropFirst())
    }

    /// As kept in the store: the name, a newline, the parameters.
    public var encoded: [UInt8] { Array(name.utf8) + [UInt8(ascii: "\n")] + parameters }

    public static func decode(_ bytes: [UInt8]) -> CallTemplate? {
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")), newline > 0, newline < 64,
            bytes[(newline + 1)...].first == UInt8(ascii: "{")
        else { return nil }
        return CallTemplate(name: String(decoding: bytes[..<newline], as: UTF8.self), parameters: Array(bytes[(newline + 1)...]))
    }
}

/// One accepted outbound request, as stored: who gets it and what they get.
public struct OutboundJob: Sendable, Equatable {
    public var id: OutboundJobID
    /// Chat ids, each once, in the order given.
    public var recipients: [Int64]
    /// The calls every recipient gets, in order (a long text already split into parts).
    public var templates: [CallTemplate]
    /// Internal user ids that had no live session: not stored as recipients, reported.
    public var unknown: Int

    public init(id: OutboundJobID, recipients: [Int64], templates: [CallTemplate], unknown: Int = 0) {
        self.id = id
        self.recipients = recipients
        self.templates = templates
        self.unknown = unknown
    }

    /// The id of recipient `chat`'s call number `index`: the outbox finds its job by it.
    public static func sendID(job: OutboundJobID, index: Int, of count: Int) -> String {
        "o:\(job):\(index):\(count)"
    }

    /// The job, the call's place and the count of calls, from an outbox call's id; nil for a
    /// call that is not a job's.
    public static func parse(sendID: String) -> (job: OutboundJobID, index: Int, count: Int)? {
        let parts = sendID.split(separator: ":")
        guard parts.count == 4, parts[0] == "o", let job = OutboundJobID(String(parts[1])), let index = Int(parts[2]),
            let count = Int(parts[3]), index < count
        else { return nil }
        return (job, index, count)
    }
}

/// What storing a job came to.
public enum OutboundCreation: Sendable, Equatable {
    case created
    /// A job with this id exists (the same idempotency key): nothing stored or sent again.
    case existing(recipients: Int)
    /// The outbound backlog is over its bound: nothing stored.
    case full
}

/// A job's progress, counted per recipient.
public struct OutboundStatus: Sendable, Equatable {
    public var id: OutboundJobID
    public var recipients: Int
    public var delivered: Int
    /// Recipients given up on, by reason (`blocked`, `chat_not_found`, `rejected_400`…).
    public var failed: [String: Int]
    public var unknown: Int

    public init(id: OutboundJobID, recipients: Int, delivered: Int, failed: [String: Int], unknown: Int) {
        self.id = id
        self.recipients = recipients
        self.delivered = delivered
        self.failed = failed
        self.unknown = unknown
    }

    public var pending: Int { max(0, recipients - delivered - failed.values.reduce(0, +)) }
}

/// What became of one recipient of a job.
public enum OutboundOutcome: Sendable, Equatable {
    case delivered
    case failed(reason: String)
}

/// The next recipients of a job to fan out, from its cursor.
public struct OutboundChunk: Sendable, Equatable {
    public var cursor: Int
    public var recipients: [Int64]
    public var templates: [CallTemplate]

    public init(cursor: Int, recipients: [Int64], templates: [CallTemplate]) {
        self.cursor = cursor
        self.recipients = recipients
        self.templates = templates
    }
}

/// The outbound backlog: recipients not yet done, and how long the oldest unfinished job waits.
public struct OutboundBacklog: Sendable, Equatable {
    public var recipients: Int
    public var oldestAgeMilliseconds: Int64

    public init(recipients: Int, oldestAgeMilliseconds: Int64) {
        self.recipients = recipients
        self.oldestAgeMilliseconds = oldestAgeMilliseconds
    }
}

/// The outbound jobs in the store (Redis in production), on a thread's own connection.
public protocol OutboundStore {
    /// Stores the job (its recipients, its templates and an entry in its partition's stream) in
    /// one step, unless a job with its id exists or the backlog would pass `maxBacklog`.
    func create(_ job: OutboundJob, maxBacklog: Int, deadline: Deadline) throws(StateStoreError) -> OutboundCreation
    func status(of id: OutboundJobID, deadline: Deadline) throws(StateStoreError) -> OutboundStatus?
    /// Up to `count` recipients from the job's cursor, with its templates; nil when the job is gone.
    func nextRecipients(of id: OutboundJobID, count: Int, deadline: Deadline) throws(StateStoreError) -> OutboundChunk?
    /// Moves the cursor past the recipients just fanned out, if it still stands at `cursor`.
    func advance(_ id: OutboundJobID, from cursor: Int, by count: Int, deadline: Deadline) throws(StateStoreError)
    /// Appends each recipient's calls to the outbox of the subject owning its chat, once per job
    /// and recipient whatever happens (a fan-out cut short and done again adds nothing twice).
    func keep(_ deliveries: [(subject: StateSubject, calls: [PendingSend])], for id: OutboundJobID, deadline: Deadline) throws(StateStoreError)
    /// Counts a recipient's outcome (a failure once per recipient).
    func record(_ id: OutboundJobID, chat: Int64, outcome: OutboundOutcome, deadline: Deadline) throws(StateStoreError)
    /// Telegram ids of internal user ids whose sessions live (a session's `finish` records its
    /// internal id: ``Completion/indexedInternalUserID``).
    func resolve(internalUserIDs: [String], deadline: Deadline) throws(StateStoreError) -> [String: Int64]
    func backlog(deadline: Deadline) throws(StateStoreError) -> OutboundBacklog
}
