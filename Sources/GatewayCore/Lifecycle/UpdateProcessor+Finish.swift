import CoreMetrics
import Logging

/// Finish: the update marked done, the state it was given written (always), the user's lease
/// released, the webhook reply admitted or kept, the answer's tail kept in the outbox, and a
/// worker told about it, all in the store's one round trip plus the note to the stream.
extension UpdateProcessor {
    /// The webhook path's finish; returns Telegram's answer.
    func finishNow(_ completion: Completion, delivery: Delivery, dependencies: ThreadDependencies, context: inout UpdateContext) -> WebhookResponse {
        let answered: WebhookResponse = delivery.reply.map { .webhookReply($0) } ?? .acknowledged
        guard completion.claim != nil || completion.reply != nil || !completion.tail.isEmpty else { return answered }
        let report: FinishReport
        do {
            report = try dependencies.state.finish(completion, deadline: context.deadline)
        } catch {
            context.line.degraded = true
            // Without the store nothing can wait for later: the reply goes now, the tail is lost.
            if !completion.tail.isEmpty {
                context.logger.warning(
                    "answer left incomplete: the state store is unavailable to keep the rest",
                    metadata: ["calls": .stringConvertible(completion.tail.count)])
                Counter(label: GatewayMetric.outgoingDropped).increment(by: completion.tail.count)
            }
            return completion.reply.map { .webhookReply($0.call) } ?? answered
        }
        if !report.leaseWasOurs {
            context.logger.warning("the user's lease had passed to another update; the state was written all the same")
        }
        if report.reply == .now, let reply = completion.reply { return .webhookReply(reply.call) }
        let kept = completion.tail.count + (report.reply == .kept ? 1 : 0)
        guard kept > 0 else { return answered }
        Counter(label: GatewayMetric.outboxKept).increment(by: kept)
        // Without its note the outbox would wait for the user's next update; Telegram's
        // redelivery of this one (a duplicate then) writes the note again.
        return schedule(completion.subject, dependencies: dependencies, context: context) ? answered : .retryLater(seconds: 1)
    }

    /// A worker's finish: everything the answer holds goes to the outbox (sent right after),
    /// so a worker that dies after this finish neither calls the service again nor loses the
    /// answer. Nil when the store failed.
    func finishInStream(_ completion: Completion, context: inout UpdateContext, state: any StateStore) -> FinishReport? {
        do {
            let report = try state.finish(completion, deadline: context.deadline)
            if !report.leaseWasOurs { context.logger.info("the user's lease had passed; the state was written all the same") }
            return report
        } catch {
            context.line.degraded = true
            return nil
        }
    }
}
