import CoreMetrics
import Logging

/// What a worker does with a stream entry after an attempt. Reasons are short codes, never user text.
public enum QueuedResult: Sendable, Equatable {
    /// Finished (answered, a duplicate, or nothing to do): acknowledge it.
    case done(RequestOutcome)
    /// Failed in a way that may pass (the service, the state store): try again later.
    case retry(reason: String)
    /// Failed on its last attempt; the user got the generic apology. Keep it as a dead letter.
    case deadLetter(reason: String)
}

/// The stream workers' side of the processor: the same stages, allowed to wait.
extension UpdateProcessor {
    /// The subject of a stored update, to send its outbox before the update itself.
    public func subject(ofStored body: [UInt8]) -> StateSubject? {
        guard case .success(let update) = decoder.decode(body) else { return nil }
        return StateSubject(update)
    }

    /// Processes one stored update: claim (waiting while a webhook request holds the user),
    /// plan, finish (the whole answer into the outbox behind what waits there, with the state),
    /// then the outbox sent as far as the windows allow soon; the rest is noted for later. A failing service or state store is retried until the last attempt; then the
    /// user gets the generic apology and the entry goes to the dead letters.
    public func process(
        stored body: [UInt8], callbackAnswered: Bool, replay: String?, attempt: Int, isLastAttempt: Bool,
        with dependencies: ThreadDependencies, context: UpdateContext
    ) -> QueuedResult {
        var context = context
        let started = clock.now()
        let update: Update
        let route: Route
        switch decode(body, state: dependencies.state, context: &context) {
        case .update(let decoded, let routed):
            (update, route) = (decoded, routed)
        case .malformed:
            // Only decodable updates are stored; an entry that is not one was written by someone else.
            context.logger.warning("queued entry is not an update; dropped", metadata: [LogKey.outcome: "\(RequestOutcome.malformed.rawValue)"])
            return .done(.malformed)
        case .unresolved:
            return retry("state_store", context: context)
        }
        if case .ignored = route { return finished(.ignored, update: update, route: route, attempt: attempt, since: started, context: context) }
        guard let subject = StateSubject(update) else {
            return finished(.ignored, update: update, route: route, attempt: attempt, since: started, context: context)
        }

        let request = BeginRequest(
            updateID: update.id, subject: subject, needsSession: route.needsSession,
            newInternalUserID: route.needsSession ? newInternalUserID() : "", token: dependencies.tokens.next(for: .worker),
            origin: .worker, replay: replay)
        // A webhook request of the same user holds the lease for at most its deadline and a margin.
        context = context.renewed(deadline: .after(seconds: settings.deadlineSeconds + 10, from: clock.now()))
        var claimed = claim(request, update: update, state: dependencies.state, context: &context)
        while case .busy(let milliseconds) = claimed {
            guard !context.isCancelled else { return retry("user_busy", context: context) }
            clock.sleep(UInt64(max(5, min(milliseconds, 200))) * 1_000_000)
            claimed = claim(request, update: update, state: dependencies.state, context: &context)
        }
        // The service gets the whole deadline, whatever the wait took.
        context = context.renewed(deadline: .after(seconds: settings.deadlineSeconds, from: clock.now()))

        let claim: Claim?
        let session: Session?
        var storeFailed = false
        switch claimed {
        case .answer(_, let outcome):
            return finished(outcome, update: update, route: route, attempt: attempt, since: started, context: context)
        case .answerAfterScheduling(_, let outcome):
            // Done before (its answer waits in the outbox: an earlier attempt died sending it).
            if let reason = sendAfterFinish(subject, dependencies: dependencies, context: context) { return retry(reason, context: context) }
            return finished(outcome, update: update, route: route, attempt: attempt, since: started, context: context)
        case .handOver, .busy:
            return retry("user_busy", context: context)
        case .proceed(let claimed, let read, _, _):
            // Calls of an earlier answer still in the outbox stay ahead of this one's: the
            // outbox is sent in order, so nothing here waits for them.
            (claim, session) = (claimed, read)
        case .failedOpen(let attempted):
            // Without the store there is no dedupe: try again rather than risk a double.
            guard isLastAttempt else { return retry("state_store", context: context) }
            (claim, session, storeFailed) = (attempted, nil, true)
        }

        // A worker whose partition lease lapsed while it waited does nothing more: the next
        // holder takes the entry over.
        guard !context.isCancelled else { return retry("partition_lost", context: context) }
        let (plan, outcome) = planAnswer(to: update, route: route, session: session, services: dependencies.services, context: &context)
        // The claim stays: the next attempt (this partition's worker) takes the lease over.
        if outcome == .serviceFailed, !isLastAttempt { return retry("service_failed", context: context) }
        var methods = sendElsewhere(plan.methods, of: update, dependencies: dependencies, context: context)
        if callbackAnswered { methods.removeAll { if case .answerCallbackQuery = $0 { true } else { false } } }

        let calls = pending(methods, state: dependencies.state, context: context)
        var completion = Completion(
            subject: subject, updateID: update.id, claim: claim, stateChange: plan.stateChange, internalUserID: plan.internalUserID,
            origin: .worker, replay: replay, tail: calls)
        completion.indexedInternalUserID = internalUserIDToIndex(session, plan: plan, of: subject, dependencies: dependencies)
        // The outbox is sent right after: its first call is taken in the finish's round trip.
        completion.advanceWithin = outboxPatience(context)
        var first: OutboxStep?
        if !storeFailed {
            if let report = finishInStream(completion, context: &context, state: dependencies.state) {
                first = report.next
            } else {
                guard isLastAttempt else { return retry("state_store", context: context) }
                storeFailed = true
            }
        }
        if storeFailed {
            // The last attempt, without the store: send what can be sent, paced as far as the store
            // allows. Nothing can keep a call for later, so one whose sender woke late for its slot
            // takes another at once.
            for call in calls {
                var outcome = sendPaced(call, slot: Self.slot(of: call), dependencies: dependencies, context: context)
                if outcome == .notNow(retryAfterMilliseconds: 0) {
                    outcome = sendPaced(call, slot: Self.slot(of: call), dependencies: dependencies, context: context)
                }
                guard outcome != .sent else { continue }
                context.logger.warning("call not sent: the state store is unavailable to keep it", metadata: ["method": "\(call.call.name)"])
                Counter(label: GatewayMetric.outgoingDropped).increment()
            }
        } else if let reason = sendAfterFinish(subject, first: first, dependencies: dependencies, context: context) {
            return retry(reason, context: context)
        }
        if outcome == .serviceFailed {
            context.logger.error("queued update failed its last attempt; dead-lettered", metadata: ["attempt": .stringConvertible(attempt)])
            return .deadLetter(reason: "service_failed")
        }
        return finished(outcome, update: update, route: route, attempt: attempt, since: started, context: context)
    }

    /// Sends the outbox the finish just filled; what the deadline does not allow stays, noted
    /// for a later turn. Returns a reason to try the entry again when not even the note could
    /// be written (the next attempt sends the outbox first, then finds the update done).
    private func sendAfterFinish(
        _ subject: StateSubject, first: OutboxStep? = nil, dependencies: ThreadDependencies, context: UpdateContext
    ) -> String? {
        switch drainOutbox(of: subject, first: first, dependencies: dependencies, context: context) {
        case .empty:
            return nil
        case .left:
            return schedule(subject, dependencies: dependencies, context: context) ? nil : "outbox_note"
        case .storeFailed:
            return "state_store"
        }
    }

    /// An entry given up without processing (dead-lettered after attempts that never reported
    /// back): the user no longer waits for it. Best effort.
    public func forget(stored body: [UInt8], with dependencies: ThreadDependencies, context: UpdateContext) {
        guard case .success(let update) = decoder.decode(body), let subject = StateSubject(update) else { return }
        _ = try? dependencies.state.finish(Completion(subject: subject, updateID: update.id, claim: nil, origin: .worker), deadline: context.deadline)
    }

    private func finished(_ outcome: RequestOutcome, update: Update, route: Route, attempt: Int, since started: UInt64, context: UpdateContext)
        -> QueuedResult
    {
        var line = context.line
        (line.route, line.outcome, line.attempt) = (route.label, outcome.rawValue, Int64(attempt))
        line.latencyMilliseconds = context.elapsedMilliseconds(since: started)
        context.log(level: .info, "queued update processed", update: line)
        count(outcome, update: update, route: route)
        return .done(outcome)
    }

    private func retry(_ reason: String, context: UpdateContext) -> QueuedResult {
        context.logger.warning("queued update will be retried", metadata: [LogKey.reason: "\(reason)"])
        Counter(label: GatewayMetric.queueRetries, dimensions: [("reason", reason)]).increment()
        return .retry(reason: reason)
    }
}
