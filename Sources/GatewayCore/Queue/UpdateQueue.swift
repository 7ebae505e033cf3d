/// How updates reach the services.
public enum DeliveryMode: String, Sendable, CaseIterable {
    /// The responder processes the update while Telegram waits, and answers with a webhook reply.
    case sync
    /// The responder stores the update in a Redis Stream and answers at once; workers process it.
    case queue
}

/// Queue mode's numbers (`QUEUE_*`), see the "Queue Mode" article.
public struct QueueSettings: Sendable, Equatable {
    /// Streams the updates are spread over, by subject; each is worked by one worker at a time,
    /// so this bounds how many updates are processed at once. Fixed for a deployment: changing
    /// it moves users to other partitions while their old entries may still wait.
    public var partitions: Int
    /// Worker threads per responder process. Every partition needs a worker, so processes ×
    /// workers must be at least `partitions`; the rest stand by to take over.
    public var workers: Int
    /// How long a partition stays with a worker that stopped renewing it (its process died):
    /// the time before its pending entries are claimed by another worker.
    public var leaseMilliseconds: Int64
    /// Attempts before an entry goes to the dead-letter stream.
    public var maxAttempts: Int
    /// Entries waiting in one partition before new updates get 503 + Retry-After.
    public var maxBacklog: Int
    /// Age of a partition's oldest waiting entry past which new updates get 503 + Retry-After.
    public var maxAgeMilliseconds: Int64
    /// The Retry-After given when a partition is full.
    public var retryAfterSeconds: Int
    /// A button press enqueued behind an entry older than this is answered at once (an empty
    /// answer stops the spinner; Telegram drops callback queries after 150 s).
    public var callbackPromptMilliseconds: Int64
    /// Dead letters kept per partition (oldest trimmed first).
    public var deadLetterLimit: Int
    /// How long a worker waits for a chat's next outgoing slot (Telegram allows about one
    /// message a second per chat) before leaving a message out; no Telegram request is waiting.
    public static let outgoingMaxWaitMilliseconds: Int64 = 30_000

    public init(
        partitions: Int = 16, workers: Int = 16, leaseMilliseconds: Int64 = 5_000, maxAttempts: Int = 5, maxBacklog: Int = 1_000,
        maxAgeMilliseconds: Int64 = 60_000, retryAfterSeconds: Int = 10, callbackPromptMilliseconds: Int64 = 5_000,
        deadLetterLimit: Int = 10_000
    ) {
        self.partitions = partitions
        self.workers = workers
        self.leaseMilliseconds = leaseMilliseconds
        self.maxAttempts = maxAttempts
        self.maxBacklog = maxBacklog
        self.maxAgeMilliseconds = maxAgeMilliseconds
        self.retryAfterSeconds = retryAfterSeconds
        self.callbackPromptMilliseconds = callbackPromptMilliseconds
        self.deadLetterLimit = deadLetterLimit
    }

    /// The partition of an update: its subject's, so a user's updates share one stream and keep
    /// their order; an update without a subject by its own id.
    public func partition(of subject: StateSubject?, updateID: Int64) -> Int {
        let key = subject?.id ?? updateID
        return Int(UInt64(bitPattern: key) % UInt64(partitions))
    }
}

/// The enqueue side of queue mode: one atomic step per update, on this thread's connection.
public protocol UpdateQueue {
    /// Dedupe, rate limit, backlog bound and the append to the update's partition, atomically.
    func enqueue(_ request: EnqueueRequest) throws(StateStoreError) -> EnqueueDecision
}

public struct EnqueueRequest: Sendable, Equatable {
    public var updateID: Int64
    public var subject: StateSubject?
    /// The update exactly as Telegram sent it; the worker decodes it again.
    public var body: [UInt8]
    public var isCallback: Bool

    public init(updateID: Int64, subject: StateSubject?, body: [UInt8], isCallback: Bool) {
        self.updateID = updateID
        self.subject = subject
        self.body = body
        self.isCallback = isCallback
    }
}

public enum EnqueueDecision: Sendable, Equatable {
    /// Stored. `answerCallbackNow`: the partition is behind, so answer the button press in the
    /// webhook reply (the worker then leaves the callback answer out).
    case queued(answerCallbackNow: Bool)
    /// Seen before (a redelivery): acknowledge.
    case duplicate
    /// Over the user's rate limit: not stored; `warn` as in sync mode.
    case limited(warn: Bool)
    /// The partition's backlog is over its bound: not stored, Telegram retries after the time.
    case full(retryAfterSeconds: Int)
}

/// One stored update as a worker reads it.
public struct QueuedUpdate: Sendable, Equatable {
    public var body: [UInt8]
    /// The callback query was already answered when the update was enqueued.
    public var callbackAnswered: Bool
    /// This is attempt `attempt` of `maxAttempts`.
    public var attempt: Int
    public var isLastAttempt: Bool
    /// An operator replayed it from the dead letters: process it even though it was finished.
    public var isReplay = false

    public init(body: [UInt8], callbackAnswered: Bool, attempt: Int, isLastAttempt: Bool) {
        self.body = body
        self.callbackAnswered = callbackAnswered
        self.attempt = attempt
        self.isLastAttempt = isLastAttempt
    }
}

/// What a worker does with an entry after processing it. Reasons are short codes, never user text.
public enum QueuedResult: Sendable, Equatable {
    /// Finished (answered, a duplicate, or nothing to do): acknowledge it.
    case done(RequestOutcome)
    /// Failed in a way that may pass (the service, the state store): try again later.
    case retry(reason: String)
    /// Failed on its last attempt; the user got the generic apology. Keep it as a dead letter.
    case deadLetter(reason: String)
}
