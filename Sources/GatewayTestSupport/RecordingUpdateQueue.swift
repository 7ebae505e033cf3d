import GatewayCore
import Synchronization

/// An `UpdateQueue` that records what is enqueued and scheduled, and answers with a decision
/// the test sets.
public final class RecordingUpdateQueue: UpdateQueue, Sendable {
    private struct State {
        var requests: [EnqueueRequest] = []
        var scheduled: [StateSubject] = []
        var deadLetters: [(send: PendingSend, reason: String)] = []
        var decision: EnqueueDecision = .queued(answerCallbackNow: false)
        var failing = false
    }

    private let state = Mutex(State())

    public init() {}

    public var requests: [EnqueueRequest] { state.withLock { $0.requests } }
    public var scheduled: [StateSubject] { state.withLock { $0.scheduled } }
    public var deadLetters: [(send: PendingSend, reason: String)] { state.withLock { $0.deadLetters } }

    /// What every following `enqueue` answers.
    public func answer(_ decision: EnqueueDecision) {
        state.withLock { $0.decision = decision }
    }

    public var failing: Bool {
        get { state.withLock { $0.failing } }
        set { state.withLock { $0.failing = newValue } }
    }

    public func enqueue(_ request: EnqueueRequest, deadline: Deadline) throws(StateStoreError) -> EnqueueDecision {
        try state.withLock { (state: inout State) throws(StateStoreError) -> EnqueueDecision in
            if state.failing { throw .unavailable }
            state.requests.append(request)
            return state.decision
        }
    }

    public func scheduleOutbox(of subject: StateSubject, deadline: Deadline) throws(StateStoreError) {
        try state.withLock { (state: inout State) throws(StateStoreError) in
            if state.failing { throw .unavailable }
            state.scheduled.append(subject)
        }
    }

    public func deadLetter(_ send: PendingSend, of subject: StateSubject, reason: String, attempts: Int, deadline: Deadline) throws(StateStoreError) {
        try state.withLock { (state: inout State) throws(StateStoreError) in
            if state.failing { throw .unavailable }
            state.deadLetters.append((send, reason))
        }
    }

    /// The updates recorded as waiting; this queue keeps no dead letters and no times.
    public func backlog(deadline: Deadline) throws(StateStoreError) -> QueueBacklog {
        try state.withLock { (state: inout State) throws(StateStoreError) -> QueueBacklog in
            if state.failing { throw .unavailable }
            return QueueBacklog(entries: state.requests.count + state.scheduled.count, oldestAgeMilliseconds: 0, deadLetters: state.deadLetters.count)
        }
    }
}
