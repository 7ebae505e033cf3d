import GatewayCore
import Synchronization

/// An `UpdateQueue` that records what is enqueued and answers with a decision the test sets.
public final class RecordingUpdateQueue: UpdateQueue, Sendable {
    private let state = Mutex<(requests: [EnqueueRequest], decision: EnqueueDecision, failing: Bool)>(([], .queued(answerCallbackNow: false), false))

    public init() {}

    public var requests: [EnqueueRequest] { state.withLock { $0.requests } }

    /// What every following `enqueue` answers.
    public func answer(_ decision: EnqueueDecision) {
        state.withLock { $0.decision = decision }
    }

    public var failing: Bool {
        get { state.withLock { $0.failing } }
        set { state.withLock { $0.failing = newValue } }
    }

    public func enqueue(_ request: EnqueueRequest) throws(StateStoreError) -> EnqueueDecision {
        try state.withLock { (state: inout (requests: [EnqueueRequest], decision: EnqueueDecision, failing: Bool)) throws(StateStoreError) -> EnqueueDecision in
            if state.failing { throw .unavailable }
            state.requests.append(request)
            return state.decision
        }
    }
}
