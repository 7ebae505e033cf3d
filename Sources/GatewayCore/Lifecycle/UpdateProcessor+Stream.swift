import CoreMetrics
import Logging

/// The webhook path's hand-over to the streams: queue mode's front door, a busy user's update,
/// and the note that tells a worker about an outbox.
extension UpdateProcessor {
    /// Queue mode: stores the decoded update in its partition and answers Telegram.
    func storeAtFrontDoor(
        _ update: Update, route: Route, body: [UInt8], dependencies: ThreadDependencies, context: inout UpdateContext
    ) -> (WebhookResponse, RequestOutcome) {
        if case .ignored = route { return (.acknowledged, .ignored) }
        return store(update, subject: StateSubject(update), body: body, origin: .frontDoor, dependencies: dependencies, context: &context)
    }

    /// Sync mode: the user is busy, so the update waits in the user's stream behind what is
    /// there, and Telegram is answered at once.
    func handOver(
        _ update: Update, subject: StateSubject, body: [UInt8], dependencies: ThreadDependencies, context: inout UpdateContext
    ) -> (WebhookResponse, RequestOutcome) {
        Counter(label: GatewayMetric.handedOver).increment()
        return store(update, subject: subject, body: body, origin: .handover, dependencies: dependencies, context: &context)
    }

    private func store(
        _ update: Update, subject: StateSubject?, body: [UInt8], origin: EnqueueRequest.Origin, dependencies: ThreadDependencies,
        context: inout UpdateContext
    ) -> (WebhookResponse, RequestOutcome) {
        let isCallback = update.type == .callbackQuery
        let decision: EnqueueDecision
        do throws(StateStoreError) {
            guard let queue = dependencies.queue else { throw .unavailable }
            decision = try queue.enqueue(
                EnqueueRequest(updateID: update.id, subject: subject, body: body, isCallback: isCallback, origin: origin),
                deadline: context.deadline)
        } catch {
            // Nowhere to keep the update: Telegram keeps it and retries, in order, losing nothing.
            context.line.degraded = true
            return (.retryLater(seconds: 5), .deferred)
        }
        switch decision {
        case .queued(let answerNow):
            Counter(label: GatewayMetric.queueEnqueued).increment()
            if answerNow, case .callbackQuery(let query) = update.content {
                return (.webhookReply(.answerCallbackQuery(callbackQueryID: query.id, text: nil, showAlert: false)), .queued)
            }
            return (.acknowledged, .queued)
        case .duplicate:
            return (.acknowledged, .duplicate)
        case .limited(let warn):
            return (limitedReply(update, warn: warn), .rateLimited)
        case .full(let seconds):
            Counter(label: GatewayMetric.queueFull).increment()
            return (.retryLater(seconds: seconds), .deferred)
        }
    }

    /// Tells the subject's partition that its outbox has calls waiting; false when it could not.
    func schedule(_ subject: StateSubject, dependencies: ThreadDependencies, context: UpdateContext) -> Bool {
        do throws(StateStoreError) {
            guard let queue = dependencies.queue else { throw .unavailable }
            try queue.scheduleOutbox(of: subject, deadline: context.deadline)
            return true
        } catch {
            context.logger.warning("the outbox's note to its worker could not be written; Telegram will deliver the update again")
            return false
        }
    }
}
