import CoreMetrics
import Logging

/// The outbound side of the lifecycle: a job fanned out into its recipients' outboxes, a
/// service's message to another chat kept in that chat's outbox, and each recipient's outcome
/// counted as the outboxes are sent.
extension UpdateProcessor {
    /// Recipients a worker fans out per step: one pipelined round trip each way.
    static let fanOutChunk = 200

    public enum FanOutResult: Equatable, Sendable {
        /// Every recipient has its calls in its outbox.
        case done
        /// The job is gone (expired, or never stored): nothing to do.
        case gone
        case retry(reason: String)
    }

    /// Puts a job's calls in each recipient's outbox, a chunk at a time from the job's cursor,
    /// with a note to each recipient's partition. A fan-out cut short (a crash, a lost lease) is
    /// done again from the cursor: the store adds a recipient's calls once per job.
    public func fanOut(_ id: OutboundJobID, dependencies: ThreadDependencies, context: UpdateContext) -> FanOutResult {
        guard let store = dependencies.outbound, let queue = dependencies.queue else { return .retry(reason: "no_outbound_store") }
        while !context.isCancelled {
            do throws(StateStoreError) {
                guard let chunk = try store.nextRecipients(of: id, count: Self.fanOutChunk, deadline: context.deadline) else { return .gone }
                guard !chunk.recipients.isEmpty else { return .done }
                let count = chunk.templates.count
                let deliveries = chunk.recipients.map { chat in
                    (
                        subject: StateSubject.windowOwner(of: chat),
                        calls: chunk.templates.enumerated().map { index, template in
                            PendingSend(id: OutboundJob.sendID(job: id, index: index, of: count), call: template.call(to: chat), pacedChatID: chat)
                        }
                    )
                }
                try store.keep(deliveries, for: id, deadline: context.deadline)
                // Every recipient gets a note, kept now or by a fan-out cut short before its notes.
                try queue.scheduleOutboxes(of: deliveries.map(\.subject), deadline: context.deadline)
                try store.advance(id, from: chunk.cursor, by: chunk.recipients.count, deadline: context.deadline)
            } catch {
                return .retry(reason: "state_store")
            }
        }
        return .retry(reason: "partition_lost")
    }

    /// Messages a service addressed to other chats (`chat_id` on `send_message`): each kept, in
    /// order, in the outbox of the subject owning that chat, for a worker to send in that chat's
    /// window. The rest of the plan is returned.
    func sendElsewhere(_ methods: [BotMethod], of update: Update, dependencies: ThreadDependencies, context: UpdateContext) -> [BotMethod] {
        let own = [update.chat?.id, update.user?.id].compactMap(\.self)
        let elsewhere = methods.enumerated().filter { $0.element.pacedChatID.map { !own.contains($0) } ?? false }
        guard !elsewhere.isEmpty else { return methods }
        var owners: [StateSubject] = []
        var calls: [StateSubject: [PendingSend]] = [:]
        for (index, method) in elsewhere {
            guard let chat = method.pacedChatID else { continue }
            let owner = StateSubject.windowOwner(of: chat)
            if calls[owner] == nil { owners.append(owner) }
            calls[owner, default: []].append(PendingSend(method, requestID: context.requestID, index: index))
        }
        for owner in owners {
            let kept =
                (try? dependencies.state.finish(
                    Completion(subject: owner, updateID: 0, claim: nil, tail: calls[owner] ?? []), deadline: context.deadline)) != nil
            if kept, schedule(owner, dependencies: dependencies, context: context) {
                Counter(label: GatewayMetric.outboxKept).increment(by: calls[owner]?.count ?? 0)
            } else {
                context.logger.warning("a message to another chat could not be kept: the state store is unavailable")
                Counter(label: GatewayMetric.outgoingDropped).increment(by: calls[owner]?.count ?? 0)
            }
        }
        let moved = Set(elsewhere.map(\.offset))
        return methods.enumerated().filter { !moved.contains($0.offset) }.map(\.element)
    }

    /// Counts a recipient's outcome against its job, when the call was a job's (its last call
    /// delivered, or any call refused or given up).
    func record(_ send: PendingSend, outcome: OutboundOutcome, dependencies: ThreadDependencies, context: UpdateContext) {
        guard let (job, index, count) = OutboundJob.parse(sendID: send.id), let chat = send.pacedChatID else { return }
        if case .delivered = outcome, index < count - 1 { return }
        switch outcome {
        case .delivered: Counter(label: GatewayMetric.outboundDelivered).increment()
        case .failed(let reason): Counter(label: GatewayMetric.outboundFailed, dimensions: [("reason", reason)]).increment()
        }
        do {
            try dependencies.outbound?.record(job, chat: chat, outcome: outcome, deadline: context.deadline)
        } catch {
            context.logger.warning("an outbound recipient's outcome was not counted: the store failed", metadata: ["job": "\(job)"])
        }
    }

    /// The internal id whose record the finish writes (the outbound API resolves it), when the
    /// session is new, its record is old, or the service gave the user another id; nil when
    /// none is due or no outbound API resolves one.
    func internalUserIDToIndex(_ session: Session?, plan: ReplyPlan, of subject: StateSubject, dependencies: ThreadDependencies) -> String? {
        guard case .user = subject.kind, dependencies.outbound != nil else { return nil }
        let changed = plan.internalUserID.map { $0 != session?.internalUserID } ?? false
        guard changed || session?.needsIndex == true else { return nil }
        return plan.internalUserID ?? session?.internalUserID
    }
}
