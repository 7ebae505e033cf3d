import CoreMetrics
import Logging

/// Queue mode: the responder's half (store the update, answer at once) and the worker's half
/// (process a stored update, every action through the Bot API).
extension WebhookHandler {
    /// Stores an admitted, decoded update in its partition and answers Telegram.
    func enqueue(_ update: Update, route: Route, body: [UInt8], queue: any UpdateQueue, logger: inout Logger) -> (WebhookResponse, RequestOutcome) {
        if case .ignored = route { return (.acknowledged, .ignored) }
        let isCallback = update.type == .callbackQuery
        let decision: EnqueueDecision
        do {
            decision = try queue.enqueue(EnqueueRequest(updateID: update.id, subject: StateSubject(update), body: body, isCallback: isCallback))
        } catch {
            // Nowhere to keep the update: Telegram keeps it and retries, in order, losing nothing.
            logger[metadataKey: LogKey.degraded] = "true"
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

    /// Processes one stored update for a worker: session, route, service, delivery through the
    /// Bot API, finish. A failing service or state store is retried until the last attempt;
    /// then the user gets the generic apology and the entry goes to the dead letters.
    public func process(_ entry: QueuedUpdate, requestID: String, with dependencies: ThreadDependencies, logger: Logger) -> QueuedResult {
        var logger = logger
        logger[metadataKey: LogKey.requestID] = "\(requestID)"
        let started = clock()
        guard case .success(let decoded) = decoder.decode(entry.body) else {
            // Only decodable updates are stored; an entry that is not one was written by someone else.
            logger.warning("queued entry is not an update; dropped", metadata: [LogKey.outcome: "\(RequestOutcome.malformed.rawValue)"])
            return .done(.malformed)
        }
        let update = CallbackDataToken.resolve(decoded, store: dependencies.state)
        logger[metadataKey: LogKey.updateID] = .stringConvertible(update.id)
        logger[metadataKey: LogKey.updateType] = "\(update.type)"
        if let user = update.user { logger[metadataKey: LogKey.userID] = .stringConvertible(user.id) }
        let route = routes.route(update, botUsername: botUsername)

        let outcome: RequestOutcome
        switch begin(update, route: route, queued: true, replay: entry.isReplay, state: dependencies.state, logger: &logger) {
        case .answer(_, let early):
            outcome = early
        case .proceed(let claim, let session):
            if claim == nil, route.needsSession, logger[metadataKey: LogKey.degraded] != nil, !entry.isLastAttempt {
                // The state store failed: without it there is no dedupe; try again rather than risk a double.
                return retry("state_store", logger: logger)
            }
            var step = Step(update: update, route: route, claim: claim, session: session, requestID: requestID)
            step.callbackAnswered = entry.callbackAnswered
            guard let (_, completed) = complete(step, with: dependencies, webhookReply: false, deferFailure: !entry.isLastAttempt, logger: &logger)
            else {
                return retry("service_failed", logger: logger)
            }
            outcome = completed
            if completed == .serviceFailed {
                logger.error("queued update failed its last attempt; dead-lettered", metadata: ["attempt": .stringConvertible(entry.attempt)])
                return .deadLetter(reason: "service_failed")
            }
        }
        logger.info(
            "queued update processed",
            metadata: [
                LogKey.route: "\(route.label)", LogKey.outcome: "\(outcome.rawValue)", "attempt": .stringConvertible(entry.attempt),
                LogKey.latencyMilliseconds: .stringConvertible(Self.milliseconds(clock() &- started)),
            ])
        Self.count(outcome, update: update, route: route)
        return .done(outcome)
    }

    private func retry(_ reason: String, logger: Logger) -> QueuedResult {
        logger.warning("queued update will be retried", metadata: [LogKey.reason: "\(reason)"])
        Counter(label: GatewayMetric.queueRetries, dimensions: [("reason", reason)]).increment()
        return .retry(reason: reason)
    }
}
