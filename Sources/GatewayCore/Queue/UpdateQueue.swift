/// How updates reach the services.
public enum DeliveryMode: String, Sendable, CaseIterable {
    /// The responder processes the update while Telegram waits, and answers with a webhook
    /// reply; what must wait (a busy user, a full sending window) goes to the user's stream.
    case sync
    /// The responder stores every update in a Redis Stream and answers at once; workers process it.
    case queue
}

/// The streams' numbers (`QUEUE_*`), see the "Queue Mode" article. Workers run in both modes:
/// in sync mode they take what the webhook path hands over.
public struct QueueSettings: Sendable, Equatable {
    /// Streams the updates are spread over, by subject; each is worked by one worker at a time,
    /// so this bounds how many updates are processed at once. Changing it moves users to other
    /// partitions; the streams above a lowered count are drained, then retired.
    public var partitions: Int
    /// Worker threads per responder process for its share of the partitions. Every partition
    /// needs a worker, so processes × workers must be at least `partitions`; the rest stand by
    /// to take over.
    public var workers: Int
    /// How long a partition stays with a worker that stopped renewing it (its process died):
    /// the time before its pending entries are claimed by another worker.
    public var leaseMilliseconds: Int64
    /// Attempts before an entry (or a call in an outbox) goes to the dead letters.
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
    /// Replicas that must hold a stored update before Telegram gets 200 (`REDIS_WAIT_REPLICAS`,
    /// Redis's `WAIT`), and how long to wait for them; 0 answers once the master has it.
    public var waitReplicas = 0
    public var waitTimeoutMilliseconds: Int64 = 100

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

    /// The partition of a subject: a user's updates and outbox share one stream and keep their
    /// order; an update without a subject goes by its own id.
    public func partition(of subject: StateSubject?, updateID: Int64 = 0) -> Int {
        let key = subject?.id ?? updateID
        return Int(UInt64(bitPattern: key) % UInt64(max(1, partitions)))
    }
}

/// The stream side every thread uses, on its own connection: storing updates (queue mode's
/// front door, and the webhook path handing over a busy user's update), telling a worker that
/// an outbox has calls waiting, and keeping undeliverable calls as dead letters.
public protocol UpdateQueue {
    /// Dedupe, the backlog bound, the rate limit (at the front door) and the append to the
    /// update's partition, atomically.
    func enqueue(_ request: EnqueueRequest, deadline: Deadline) throws(StateStoreError) -> EnqueueDecision

    /// Appends a note to the subject's partition that its outbox has calls waiting.
    func scheduleOutbox(of subject: StateSubject, deadline: Deadline) throws(StateStoreError)

    /// The same for many subjects, in one round trip.
    func scheduleOutboxes(of subjects: [StateSubject], deadline: Deadline) throws(StateStoreError)

    /// Keeps `send`, which cannot be delivered, among the partition's dead letters with `reason`.
    func deadLetter(_ send: PendingSend, of subject: StateSubject, reason: String, attempts: Int, deadline: Deadline) throws(StateStoreError)

    /// Every partition's entries waiting or in progress (the retiring streams' too), the oldest
    /// one's age, the dead letters kept and the fleet's processes, in two round trips (for the
    /// metrics, at scrape time).
    func backlog(deadline: Deadline) throws(StateStoreError) -> QueueBacklog
}

/// The streams' backlog, all partitions together (retiring ones included), and the fleet.
public struct QueueBacklog: Sendable, Equatable {
    public var entries: Int
    public var oldestAgeMilliseconds: Int64
    public var deadLetters: Int
    /// Entries in streams at or above QUEUE_PARTITIONS (left by a larger count): still drained
    /// by the workers, whatever the mode, and shown until they are.
    public var retiringEntries: Int
    /// Processes registered in the fleet (every host's).
    public var fleetProcesses: Int

    public init(entries: Int, oldestAgeMilliseconds: Int64, deadLetters: Int, retiringEntries: Int = 0, fleetProcesses: Int = 0) {
        self.entries = entries
        self.oldestAgeMilliseconds = oldestAgeMilliseconds
        self.deadLetters = deadLetters
        self.retiringEntries = retiringEntries
        self.fleetProcesses = fleetProcesses
    }
}

extension UpdateQueue {
    public func scheduleOutboxes(of subjects: [StateSubject], deadline: Deadline) throws(StateStoreError) {
        for subject in subjects { try scheduleOutbox(of: subject, deadline: deadline) }
    }
}

public struct EnqueueRequest: Sendable, Equatable {
    /// Who stores the update.
    public enum Origin: Sendable, Equatable {
        /// Queue mode's front door: the rate limit applies, and a button press is answered at
        /// once only when the partition is behind.
        case frontDoor
        /// The webhook path handing over an update whose user is busy: `begin` already rate
        /// limited it, and a button press is answered at once.
        case handover
    }

    public var updateID: Int64
    public var subject: StateSubject?
    /// The update exactly as Telegram sent it; the worker decodes it again.
    public var body: [UInt8]
    public var isCallback: Bool
    public var origin: Origin

    public init(updateID: Int64, subject: StateSubject?, body: [UInt8], isCallback: Bool, origin: Origin = .frontDoor) {
        self.updateID = updateID
        self.subject = subject
        self.body = body
        self.isCallback = isCallback
        self.origin = origin
    }
}

public enum EnqueueDecision: Sendable, Equatable {
    /// Stored. `answerCallbackNow`: answer the button press in the webhook reply (the worker
    /// then leaves the callback answer out).
    case queued(answerCallbackNow: Bool)
    /// Seen before (a redelivery): acknowledge.
    case duplicate
    /// Over the user's rate limit: not stored; `warn` as in sync mode.
    case limited(warn: Bool)
    /// The partition's backlog is over its bound: not stored, Telegram retries after the time.
    case full(retryAfterSeconds: Int)
}

/// One entry of a partition's stream as a worker reads it.
public struct StreamEntry: Sendable, Equatable {
    public enum Content: Sendable, Equatable {
        /// An update as Telegram sent it. `callbackAnswered`: its button press was answered when
        /// it was stored. `replay`: an operator replayed it from the dead letters (this is the
        /// replay's id): processed although it was finished, once.
        case update(body: [UInt8], callbackAnswered: Bool, replay: String?)
        /// The subject's outbox has calls waiting.
        case outbox(StateSubject)
        /// A call replayed from the dead letters, sent as it is.
        case delivery(PendingSend)
        /// An outbound job to fan out into its recipients' outboxes.
        case job(OutboundJobID)
        /// Anything this version does not read: acknowledged and logged.
        case unreadable
    }

    public let partition: Int
    public let id: String
    public let content: Content

    public init(partition: Int, id: String, content: Content) {
        self.partition = partition
        self.id = id
        self.content = content
    }
}

/// A worker's side of the streams, on its own connection (its reads block). Leases make one
/// worker at a time the holder of a partition; the worker then reads its entries in order.
public protocol PartitionStore {
    /// Takes a free partition for `worker`: true when it is now `worker`'s.
    func takeLease(partition: Int, worker: String, milliseconds: Int64) throws(StateStoreError) -> Bool
    /// Extends each lease only while it is still its worker's: false where it is not (it
    /// expired, or was released); a free partition is never taken by a renewal. All in one
    /// round trip: a process renews every partition it holds at once.
    func renewLeases(_ held: [(partition: Int, worker: String)], milliseconds: Int64) throws(StateStoreError) -> [Bool]
    /// Which of `partitions` no worker holds (and, with `withEntries`, which of those hold
    /// entries), read in one round trip (per node of a cluster): a worker looking for work
    /// tries to take only those.
    func freePartitions(_ partitions: Range<Int>, withEntries: Bool) throws(StateStoreError) -> [Int]
    /// Gives the lease up if it is still `worker`'s.
    func releaseLease(partition: Int, worker: String)
    /// Creates the partition's stream and consumer group if they do not exist yet.
    func prepare(partition: Int) throws(StateStoreError)
    /// An entry left pending for at least `idleMilliseconds` by another reader (a holder that
    /// died, stopped or lost its lease mid-entry), oldest first.
    func claimPending(partition: Int, worker: String, idleMilliseconds: Int64) throws(StateStoreError) -> StreamEntry?
    /// The next new entries, up to `count` in arrival order, waiting up to `blockMilliseconds`
    /// for one. They are pending for `worker` from now: when it stops or loses the partition
    /// before working them, the partition's next holder claims them.
    func readNew(partition: Int, worker: String, count: Int, blockMilliseconds: Int) throws(StateStoreError) -> [StreamEntry]
    /// Counts an attempt at `entry` before it is made, so attempts cut short by a crash count.
    func countAttempt(_ entry: StreamEntry) throws(StateStoreError) -> Int
    /// The entry is done: removed from the stream.
    func acknowledge(_ entry: StreamEntry) throws(StateStoreError)
    /// The same, and in the same round trip counts an attempt at `next` (the entry the worker
    /// works next, read already) before it is made.
    func acknowledge(_ entry: StreamEntry, countingAttemptAt next: StreamEntry) throws(StateStoreError) -> Int
    /// The same, and in the same round trip reads the partition's next new entries, up to
    /// `count` in arrival order (pending for `worker` from now, as `readNew`), and counts an
    /// attempt at the first: none when there is none (it never waits for one).
    func acknowledge(
        _ entry: StreamEntry, readingNewFor worker: String, count: Int
    ) throws(StateStoreError) -> (entries: [StreamEntry], firstAttempt: Int)
    /// Moves the entry to the partition's dead letters with `reason`, in one step.
    func deadLetter(_ entry: StreamEntry, reason: String, attempts: Int, limit: Int) throws(StateStoreError)

    /// Registers (or keeps registered) `member` in the fleet for `milliseconds`, drops the
    /// members whose registration ran out, and reads the fleet: one call a heartbeat.
    func joinFleet(_ member: FleetMember, milliseconds: Int64) throws(StateStoreError) -> FleetView
    /// Takes `member` out of the fleet at once (a process stopping), so the others take its share.
    func leaveFleet(_ member: FleetMember)
    /// Lowers the streams in use from `partitions` to `inUse` when the retiring streams
    /// (`inUse..<partitions`) hold no entry and no dead letter and no live process stores in
    /// them; true when it did.
    func retirePartitions(from partitions: Int, to inUse: Int) throws(StateStoreError) -> Bool
}
