import GatewayCore
import Synchronization

/// The outbound jobs in memory with the Redis scripts' semantics: created once per id within
/// the backlog bound, with an entry in the job's partition; fanned out from a cursor; each
/// recipient's calls kept in its outbox once; each recipient's outcome counted once.
public final class InMemoryOutbound: OutboundStore, Sendable {
    private struct Job {
        var job: OutboundJob
        var cursor = 0
        var outcomes: [Int64: OutboundOutcome] = [:]
        var createdAt: Int64
    }

    private struct State {
        var jobs: [OutboundJobID: Job] = [:]
        var failing = false
    }

    private let state = Mutex(State())
    private let store: InMemoryStateStore
    private let streams: InMemoryStreams

    public init(store: InMemoryStateStore, streams: InMemoryStreams) {
        self.store = store
        self.streams = streams
    }

    public var failing: Bool {
        get { state.withLock { $0.failing } }
        set { state.withLock { $0.failing = newValue } }
    }

    public var jobCount: Int { state.withLock { $0.jobs.count } }

    public func create(_ job: OutboundJob, maxBacklog: Int, deadline: Deadline) throws(StateStoreError) -> OutboundCreation {
        let now = store.clock.milliseconds
        let creation = try state.withLock { (state: inout State) throws(StateStoreError) -> OutboundCreation in
            if state.failing { throw .unavailable }
            if let existing = state.jobs[job.id] { return .existing(recipients: existing.job.recipients.count) }
            let backlog = state.jobs.values.reduce(0) { $0 + $1.job.recipients.count - $1.outcomes.count }
            guard backlog + job.recipients.count <= maxBacklog else { return .full }
            state.jobs[job.id] = Job(job: job, createdAt: now)
            return .created
        }
        if creation == .created { streams.append(.job(job.id), to: job.id.partition) }
        return creation
    }

    public func status(of id: OutboundJobID, deadline: Deadline) throws(StateStoreError) -> OutboundStatus? {
        try state.withLock { (state: inout State) throws(StateStoreError) -> OutboundStatus? in
            if state.failing { throw .unavailable }
            guard let job = state.jobs[id] else { return nil }
            var delivered = 0
            var failed: [String: Int] = [:]
            for outcome in job.outcomes.values {
                switch outcome {
                case .delivered: delivered += 1
                case .failed(let reason): failed[reason, default: 0] += 1
                }
            }
            return OutboundStatus(id: id, recipients: job.job.recipients.count, delivered: delivered, failed: failed, unknown: job.job.unknown)
        }
    }

    public func nextRecipients(of id: OutboundJobID, count: Int, deadline: Deadline) throws(StateStoreError) -> OutboundChunk? {
        try state.withLock { (state: inout State) throws(StateStoreError) -> OutboundChunk? in
            if state.failing { throw .unavailable }
            guard let job = state.jobs[id] else { return nil }
            let recipients = job.job.recipients.dropFirst(job.cursor).prefix(count)
            return OutboundChunk(cursor: job.cursor, recipients: Array(recipients), templates: job.job.templates)
        }
    }

    public func advance(_ id: OutboundJobID, from cursor: Int, by count: Int, deadline: Deadline) throws(StateStoreError) {
        try state.withLock { (state: inout State) throws(StateStoreError) in
            if state.failing { throw .unavailable }
            if state.jobs[id]?.cursor == cursor { state.jobs[id]?.cursor = cursor + count }
        }
    }

    public func keep(_ deliveries: [(subject: StateSubject, calls: [PendingSend])], for id: OutboundJobID, deadline: Deadline) throws(StateStoreError)
    {
        if failing { throw .unavailable }
        for delivery in deliveries {
            try store.keepOnce(delivery.calls, of: delivery.subject, marker: "\(delivery.subject.hashTag):job:\(id)")
        }
    }

    public func record(_ id: OutboundJobID, chat: Int64, outcome: OutboundOutcome, deadline: Deadline) throws(StateStoreError) {
        try state.withLock { (state: inout State) throws(StateStoreError) in
            if state.failing { throw .unavailable }
            guard state.jobs[id] != nil, state.jobs[id]?.outcomes[chat] == nil else { return }
            state.jobs[id]?.outcomes[chat] = outcome
        }
    }

    public func resolve(internalUserIDs: [String], deadline: Deadline) throws(StateStoreError) -> [String: Int64] {
        try state.withLock { (state: inout State) throws(StateStoreError) in
            if state.failing { throw .unavailable }
        }
        var resolved: [String: Int64] = [:]
        for id in internalUserIDs {
            // Only while the session lives and still has this internal id.
            guard let user = store.recordedUser(of: id), store.liveInternalUserID(of: .windowOwner(of: user)) == id else { continue }
            resolved[id] = user
        }
        return resolved
    }

    public func backlog(deadline: Deadline) throws(StateStoreError) -> OutboundBacklog {
        let now = store.clock.milliseconds
        return try state.withLock { (state: inout State) throws(StateStoreError) -> OutboundBacklog in
            if state.failing { throw .unavailable }
            let open = state.jobs.values.filter { $0.outcomes.count < $0.job.recipients.count }
            return OutboundBacklog(
                recipients: open.reduce(0) { $0 + $1.job.recipients.count - $1.outcomes.count },
                oldestAgeMilliseconds: open.map { now - $0.createdAt }.max() ?? 0)
        }
    }
}
