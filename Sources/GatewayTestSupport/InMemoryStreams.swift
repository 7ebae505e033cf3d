import GatewayCore
import Synchronization

/// The streams in memory with the Redis scripts' semantics: the front door and hand-over
/// (dedupe, backlog bound, rate limit at the front door), outbox notes, per-partition leases
/// (a renewal never takes a free partition), pending entries claimed by the next holder,
/// attempts counted per entry, dead letters, and the fleet registry. On the test's clock.
public final class InMemoryStreams: UpdateQueue, PartitionStore, Sendable {
    private struct Partition {
        var entries: [(id: String, content: StreamEntry.Content)] = []
        /// Delivered and not acknowledged: the worker it was delivered to, and when (ms).
        var pending: [String: (worker: String, at: Int64)] = [:]
        /// How far `readNew` has delivered.
        var delivered = 0
        var attempts: [String: Int] = [:]
        var dead: [(entry: StreamEntry, reason: String, attempts: Int)] = []
        var owner: (worker: String, expiresAt: Int64)?
    }

    private struct State {
        var partitions: [Int: Partition] = [:]
        var seen: Set<Int64> = []
        var buckets: [StateSubject: TokenBucket] = [:]
        var nextID = 0
        var failing = false
        var deadSends: [(send: PendingSend, reason: String)] = []
        var fleet: [String: (member: FleetMember, expiresAt: Int64)] = [:]
        var fleetPartitions = 0
        /// A worker's calls for its entries, each a round trip to Redis, by name.
        var calls: [String: Int] = [:]
    }

    private let state = Mutex(State())
    private let settings: QueueSettings
    private let policy: StatePolicy
    private let clock: ManualClock

    public init(settings: QueueSettings, policy: StatePolicy = .testing, clock: ManualClock) {
        self.settings = settings
        self.policy = policy
        self.clock = clock
    }

    public var failing: Bool {
        get { state.withLock { $0.failing } }
        set { state.withLock { $0.failing = newValue } }
    }

    /// How many times a worker called `name` (`readNew`, `countAttempt` or `acknowledge`):
    /// with Redis, as many round trips.
    public func calls(_ name: String) -> Int {
        state.withLock { $0.calls[name, default: 0] }
    }

    /// The entries of a partition not yet acknowledged, in order.
    public func entries(_ partition: Int) -> [StreamEntry] {
        state.withLock { state in
            (state.partitions[partition]?.entries ?? []).map { StreamEntry(partition: partition, id: $0.id, content: $0.content) }
        }
    }

    /// Every partition's dead letters: the entries and the calls.
    public var deadLetters: [(entry: StreamEntry, reason: String, attempts: Int)] {
        state.withLock { state in state.partitions.keys.sorted().flatMap { state.partitions[$0]?.dead ?? [] } }
    }

    public var deadCalls: [(send: PendingSend, reason: String)] { state.withLock { $0.deadSends } }

    public func owner(_ partition: Int) -> String? {
        let now = clock.milliseconds
        return state.withLock { state in state.partitions[partition]?.owner.flatMap { $0.expiresAt > now ? $0.worker : nil } }
    }

    /// Appends an entry as an operator's replay or another writer would.
    public func append(_ content: StreamEntry.Content, to partition: Int) {
        state.withLock { state in self.append(content, to: partition, state: &state) }
    }

    /// Appends under an id that starts with the test clock's milliseconds, as Redis's do.
    private func append(_ content: StreamEntry.Content, to partition: Int, state: inout State) {
        state.nextID += 1
        state.partitions[partition, default: Partition()].entries.append((id: "\(clock.milliseconds)-\(state.nextID)", content: content))
    }

    public func backlog(deadline: Deadline) throws(StateStoreError) -> QueueBacklog {
        let now = clock.milliseconds
        return try state.withLock { (state: inout State) throws(StateStoreError) -> QueueBacklog in
            if state.failing { throw .unavailable }
            var backlog = QueueBacklog(
                entries: 0, oldestAgeMilliseconds: 0, deadLetters: state.deadSends.count,
                fleetProcesses: state.fleet.values.count { $0.expiresAt > now })
            for (number, partition) in state.partitions {
                backlog.entries += partition.entries.count
                if number >= settings.partitions { backlog.retiringEntries += partition.entries.count }
                backlog.deadLetters += partition.dead.count
                if let first = partition.entries.first, let added = Int64(first.id.prefix { $0 != "-" }) {
                    backlog.oldestAgeMilliseconds = max(backlog.oldestAgeMilliseconds, now - added)
                }
            }
            return backlog
        }
    }

    // MARK: UpdateQueue

    public func enqueue(_ request: EnqueueRequest, deadline: Deadline) throws(StateStoreError) -> EnqueueDecision {
        let now = clock.milliseconds
        let settings = settings
        let policy = policy
        return try state.withLock { (state: inout State) throws(StateStoreError) -> EnqueueDecision in
            if state.failing { throw .unavailable }
            if state.seen.contains(request.updateID) { return .duplicate }
            let partition = settings.partition(of: request.subject, updateID: request.updateID)
            let backlog = state.partitions[partition]?.entries.count ?? 0
            if backlog >= settings.maxBacklog * (request.isCallback ? 2 : 1) { return .full(retryAfterSeconds: settings.retryAfterSeconds) }
            if request.origin == .frontDoor, let subject = request.subject {
                let (bucket, taken) = TokenBucket.take(
                    state.buckets[subject], now: now, capacity: policy.rateLimitRequests, windowMilliseconds: policy.rateLimitWindowMilliseconds)
                state.buckets[subject] = bucket
                if !taken.allowed {
                    state.seen.insert(request.updateID)
                    return .limited(warn: taken.warn)
                }
            }
            let answered = request.isCallback && request.origin == .handover
            self.append(.update(body: request.body, callbackAnswered: answered, replay: nil), to: partition, state: &state)
            state.seen.insert(request.updateID)
            return .queued(answerCallbackNow: answered)
        }
    }

    public func scheduleOutbox(of subject: StateSubject, deadline: Deadline) throws(StateStoreError) {
        let partition = settings.partition(of: subject)
        try state.withLock { (state: inout State) throws(StateStoreError) in
            if state.failing { throw .unavailable }
            self.append(.outbox(subject), to: partition, state: &state)
        }
    }

    public func deadLetter(_ send: PendingSend, of subject: StateSubject, reason: String, attempts: Int, deadline: Deadline) throws(StateStoreError) {
        try state.withLock { (state: inout State) throws(StateStoreError) in
            if state.failing { throw .unavailable }
            state.deadSends.append((send, reason))
        }
    }

    // MARK: PartitionStore

    public func takeLease(partition: Int, worker: String, milliseconds: Int64) throws(StateStoreError) -> Bool {
        let now = clock.milliseconds
        return try state.withLock { (state: inout State) throws(StateStoreError) -> Bool in
            if state.failing { throw .unavailable }
            if let owner = state.partitions[partition]?.owner, owner.expiresAt > now, owner.worker != worker { return false }
            state.partitions[partition, default: Partition()].owner = (worker, now + milliseconds)
            return true
        }
    }

    public func freePartitions(_ partitions: Range<Int>, withEntries: Bool) throws(StateStoreError) -> [Int] {
        let now = clock.milliseconds
        return try state.withLock { (state: inout State) throws(StateStoreError) -> [Int] in
            if state.failing { throw .unavailable }
            return partitions.filter { partition in
                let stream = state.partitions[partition]
                return (stream?.owner.map { $0.expiresAt <= now } ?? true) && (!withEntries || stream?.entries.isEmpty == false)
            }
        }
    }

    public func renewLeases(_ held: [(partition: Int, worker: String)], milliseconds: Int64) throws(StateStoreError) -> [Bool] {
        let now = clock.milliseconds
        return try state.withLock { (state: inout State) throws(StateStoreError) -> [Bool] in
            if state.failing { throw .unavailable }
            return held.map { partition, worker in
                guard let owner = state.partitions[partition]?.owner, owner.expiresAt > now, owner.worker == worker else { return false }
                state.partitions[partition]?.owner = (worker, now + milliseconds)
                return true
            }
        }
    }

    public func releaseLease(partition: Int, worker: String) {
        state.withLock { state in
            if state.partitions[partition]?.owner?.worker == worker { state.partitions[partition]?.owner = nil }
        }
    }

    public func prepare(partition: Int) throws(StateStoreError) {
        try state.withLock { (state: inout State) throws(StateStoreError) in
            if state.failing { throw .unavailable }
            if state.partitions[partition] == nil { state.partitions[partition] = Partition() }
        }
    }

    public func claimPending(partition: Int, worker: String, idleMilliseconds: Int64) throws(StateStoreError) -> StreamEntry? {
        let now = clock.milliseconds
        return try state.withLock { (state: inout State) throws(StateStoreError) -> StreamEntry? in
            if state.failing { throw .unavailable }
            guard let stream = state.partitions[partition] else { return nil }
            for entry in stream.entries {
                guard let delivered = stream.pending[entry.id], now >= delivered.at + idleMilliseconds else { continue }
                state.partitions[partition]?.pending[entry.id] = (worker, now)
                return StreamEntry(partition: partition, id: entry.id, content: entry.content)
            }
            return nil
        }
    }

    public func readNew(partition: Int, worker: String, count: Int, blockMilliseconds: Int) throws(StateStoreError) -> [StreamEntry] {
        let now = clock.milliseconds
        let entries = try state.withLock { (state: inout State) throws(StateStoreError) -> [StreamEntry] in
            if state.failing { throw .unavailable }
            state.calls["readNew", default: 0] += 1
            return Self.read(partition: partition, worker: worker, count: count, at: now, state: &state)
        }
        // An empty read blocks, on the test's clock.
        if entries.isEmpty { clock.advance(milliseconds: Int64(blockMilliseconds)) }
        return entries
    }

    public func countAttempt(_ entry: StreamEntry) throws(StateStoreError) -> Int {
        try state.withLock { (state: inout State) throws(StateStoreError) -> Int in
            if state.failing { throw .unavailable }
            state.calls["countAttempt", default: 0] += 1
            return Self.count(entry, state: &state)
        }
    }

    public func acknowledge(_ entry: StreamEntry) throws(StateStoreError) {
        try acknowledge(entry) { (_: inout State) in }
    }

    public func acknowledge(_ entry: StreamEntry, countingAttemptAt next: StreamEntry) throws(StateStoreError) -> Int {
        try acknowledge(entry) { Self.count(next, state: &$0) }
    }

    public func acknowledge(
        _ entry: StreamEntry, readingNewFor worker: String, count: Int
    ) throws(StateStoreError) -> (entries: [StreamEntry], firstAttempt: Int) {
        let now = clock.milliseconds
        return try acknowledge(entry) { state in
            // A read inside the acknowledgement never blocks.
            let read = Self.read(partition: entry.partition, worker: worker, count: count, at: now, state: &state)
            return (read, read.first.map { Self.count($0, state: &state) } ?? 0)
        }
    }

    /// Removes `entry` and, in the same step, does what the worker takes next.
    private func acknowledge<Next>(_ entry: StreamEntry, then next: (inout State) -> Next) throws(StateStoreError) -> Next {
        try state.withLock { (state: inout State) throws(StateStoreError) -> Next in
            if state.failing { throw .unavailable }
            state.calls["acknowledge", default: 0] += 1
            Self.remove(entry, state: &state)
            return next(&state)
        }
    }

    private static func read(partition: Int, worker: String, count: Int, at now: Int64, state: inout State) -> [StreamEntry] {
        guard let stream = state.partitions[partition] else { return [] }
        let read = stream.entries[stream.delivered..<min(stream.entries.count, stream.delivered + max(1, count))]
        state.partitions[partition]?.delivered += read.count
        for entry in read { state.partitions[partition]?.pending[entry.id] = (worker, now) }
        return read.map { StreamEntry(partition: partition, id: $0.id, content: $0.content) }
    }

    private static func count(_ entry: StreamEntry, state: inout State) -> Int {
        state.partitions[entry.partition, default: Partition()].attempts[entry.id, default: 0] += 1
        return state.partitions[entry.partition]?.attempts[entry.id] ?? 1
    }

    public func deadLetter(_ entry: StreamEntry, reason: String, attempts: Int, limit: Int) throws(StateStoreError) {
        try state.withLock { (state: inout State) throws(StateStoreError) in
            if state.failing { throw .unavailable }
            state.partitions[entry.partition, default: Partition()].dead.append((entry, reason, attempts))
            Self.remove(entry, state: &state)
        }
    }

    // MARK: Fleet

    /// The streams that may hold entries, as the registry records them.
    public var fleetPartitions: Int { state.withLock { $0.fleetPartitions } }

    public func joinFleet(_ member: FleetMember, milliseconds: Int64) throws(StateStoreError) -> FleetView {
        let now = clock.milliseconds
        return try state.withLock { (state: inout State) throws(StateStoreError) -> FleetView in
            if state.failing { throw .unavailable }
            state.fleet = state.fleet.filter { $0.value.expiresAt > now }
            state.fleet[member.name] = (member, now + milliseconds)
            state.fleetPartitions = max(state.fleetPartitions, member.partitions)
            return FleetView(members: state.fleet.values.map(\.member).sorted { $0.name < $1.name }, partitions: state.fleetPartitions)
        }
    }

    public func leaveFleet(_ member: FleetMember) {
        _ = state.withLock { $0.fleet.removeValue(forKey: member.name) }
    }

    public func retirePartitions(from partitions: Int, to inUse: Int) throws(StateStoreError) -> Bool {
        let now = clock.milliseconds
        return try state.withLock { (state: inout State) throws(StateStoreError) -> Bool in
            if state.failing { throw .unavailable }
            let drained = (inUse..<max(inUse, partitions)).allSatisfy { partition in
                state.partitions[partition].map { $0.entries.isEmpty && $0.dead.isEmpty } ?? true
            }
            let storing = state.fleet.values.contains { $0.expiresAt > now && $0.member.partitions > inUse }
            guard drained, !storing, state.fleetPartitions == partitions else { return false }
            state.fleetPartitions = inUse
            return true
        }
    }

    private static func remove(_ entry: StreamEntry, state: inout State) {
        guard var stream = state.partitions[entry.partition], let index = stream.entries.firstIndex(where: { $0.id == entry.id }) else { return }
        stream.entries.remove(at: index)
        if index < stream.delivered { stream.delivered -= 1 }
        stream.pending[entry.id] = nil
        stream.attempts[entry.id] = nil
        state.partitions[entry.partition] = stream
    }
}
