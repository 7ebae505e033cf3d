import CoreMetrics
import Logging

/// Deliver: the answer's calls in order. The webhook path sends what the chat's window allows
/// now (the last call as the webhook reply) and keeps the rest, in order, for a worker; a
/// worker sends an outbox paced, waiting for slots within its deadline. Nothing is left out
/// for pacing: a call ends sent, refused by Telegram, or among the dead letters.
extension UpdateProcessor {
    struct Delivery {
        /// The webhook reply, its slot reserved.
        var reply: BotCall?
        /// The webhook reply whose chat's window lives with the subject: `finish` admits it in
        /// the same round trip, or keeps it in the outbox.
        var storedReply: PendingSend?
        /// What waits for a worker, in order.
        var tail: [PendingSend] = []
    }

    /// The webhook path's delivery: never waits for a slot or a 429.
    func deliverNow(_ methods: [BotMethod], subject: StateSubject, dependencies: ThreadDependencies, context: inout UpdateContext) -> Delivery {
        let started = clock.now()
        defer { context.line.deliveryMilliseconds = context.elapsedMilliseconds(since: started) }
        let methods = shorten(methods, state: dependencies.state, context: context)
        var delivery = Delivery()
        for (index, method) in methods.enumerated() {
            let pending = PendingSend(method, requestID: context.requestID, index: index)
            if !delivery.tail.isEmpty {
                delivery.tail.append(pending)
                continue
            }
            if settings.webhookReply && index == methods.count - 1 {
                if let chat = method.pacedChatID {
                    if subject.ownsWindow(of: chat) {
                        delivery.storedReply = pending
                        continue
                    }
                    guard dependencies.outgoing.reserve(chatID: chat, throughBotAPI: false, maxWaitMilliseconds: 0, deadline: context.deadline) == 0
                    else {
                        delivery.tail.append(pending)
                        continue
                    }
                }
                delivery.reply = method.call
                continue
            }
            if let chat = method.pacedChatID,
                dependencies.outgoing.reserve(chatID: chat, throughBotAPI: true, maxWaitMilliseconds: 0, deadline: context.deadline) != 0
            {
                delivery.tail.append(pending)
                continue
            }
            do {
                try dependencies.botAPI.call(method.call, deadline: context.deadline)
            } catch {
                Self.countFailure(of: method.call, error)
                if let seconds = error.retryAfterSeconds {
                    dependencies.outgoing.pause(milliseconds: Int64(seconds) * 1000, deadline: context.deadline)
                }
                if error.isRetryable {
                    // A 429 is not the call's fault: no attempt is counted for it.
                    delivery.tail.append(error.retryAfterSeconds == nil ? pending.failedOnce() : pending)
                    context.logger.warning(
                        "Bot API call failed; it and the rest of the answer are kept for a worker",
                        metadata: ["method": "\(method.name)", LogKey.error: "\(error)"])
                } else {
                    context.logger.warning("Bot API refused a call; not retried", metadata: ["method": "\(method.name)", LogKey.error: "\(error)"])
                }
            }
        }
        return delivery
    }

    /// Buttons whose callback data is over Telegram's 64 bytes carry a token instead.
    private func shorten(_ methods: [BotMethod], state: any StateStore, context: UpdateContext) -> [BotMethod] {
        let (shortened, dropped) = CallbackDataToken.shorten(
            methods, store: state, ttlSeconds: settings.sessionTTLSeconds, deadline: context.deadline)
        if dropped > 0 {
            context.logger.warning(
                "buttons with long callback data left out: the state store is unavailable", metadata: ["buttons": .stringConvertible(dropped)])
        }
        return shortened
    }

    /// The answer's calls as they wait in an outbox (a worker's delivery goes through it).
    func pending(_ methods: [BotMethod], state: any StateStore, context: UpdateContext) -> [PendingSend] {
        shorten(methods, state: state, context: context).enumerated().map { PendingSend($1, requestID: context.requestID, index: $0) }
    }

    enum SendOutcome: Equatable {
        case sent
        /// Telegram refused it (a 4xx): final.
        case refused(BotAPIError)
        /// A network or server error: worth another attempt later.
        case failed(BotAPIError)
        /// Not within what this thread may wait (the slot, a 429): after this long, no attempt
        /// counted.
        case notNow(retryAfterMilliseconds: Int64)
    }

    /// Sends one call as a worker: takes its slot (the chat's, unless `slot` says it is taken
    /// already, and the bot's), waits for it within the deadline, then makes the call, unless
    /// it is by then too long after the slot (``OutgoingLimits/lateSendMilliseconds``).
    func sendPaced(_ send: PendingSend, slot: OutboxSlot, dependencies: ThreadDependencies, context: UpdateContext) -> SendOutcome {
        guard !context.isCancelled else { return .notNow(retryAfterMilliseconds: 0) }
        let budget = min(context.waitBudgetMilliseconds, Self.workerPatienceMilliseconds)
        let wait: Int64?
        switch slot {
        case .unpaced:
            wait = 0
        case .later(let milliseconds):
            return .notNow(retryAfterMilliseconds: min(milliseconds, 1000))
        case .reserved(let chatWait):
            wait = dependencies.outgoing.reserveBotAPI(afterMilliseconds: chatWait, maxWaitMilliseconds: budget, deadline: context.deadline)
        case .elsewhere:
            wait = send.pacedChatID.flatMap {
                dependencies.outgoing.reserve(chatID: $0, throughBotAPI: true, maxWaitMilliseconds: budget, deadline: context.deadline)
            }
        }
        guard let wait else { return .notNow(retryAfterMilliseconds: 1000) }
        // No earlier than the slot: the store's clock read it before the reply came back.
        let slotAt = clock.now() + UInt64(wait) * 1_000_000
        if wait > 0 {
            guard context.pause(milliseconds: wait) else { return .notNow(retryAfterMilliseconds: 0) }
            // A 429 that came in while this sender waited stops it too (the slot is let go).
            let paused = dependencies.outgoing.pausedMilliseconds(deadline: context.deadline)
            if paused > 0 { return .notNow(retryAfterMilliseconds: paused) }
        }
        guard !context.isCancelled else { return .notNow(retryAfterMilliseconds: 0) }
        // The budget counts slots, Telegram counts arrivals: a send leaving well after its slot
        // (a late wake-up, a stalled round trip, the process held up) would land among the next
        // slots' sends and crowd one second past the limit. It takes a new slot instead; the one
        // it leaves stays counted, unused. Checked last, right before the call. Without a
        // bot-wide budget only chats' windows pace, whose seconds-long spans a late send does
        // not crowd.
        if slot != .unpaced, dependencies.outgoing.hasBotBudget,
            clock.now() > slotAt + UInt64(OutgoingLimits.lateSendMilliseconds) * 1_000_000
        {
            Counter(label: GatewayMetric.outboxLateSends).increment()
            return .notNow(retryAfterMilliseconds: 0)
        }
        do {
            try dependencies.botAPI.call(send.call, deadline: context.deadline)
            return .sent
        } catch {
            Self.countFailure(of: send.call, error)
            if let seconds = error.retryAfterSeconds {
                // Every process waits it out: the bot-wide budget starts after the pause.
                dependencies.outgoing.pause(milliseconds: Int64(seconds) * 1000, deadline: context.deadline)
                return .notNow(retryAfterMilliseconds: Int64(seconds) * 1000)
            }
            return error.isRetryable ? .failed(error) : .refused(error)
        }
    }

    /// The slot of a call found elsewhere than first in an outbox (a replayed one).
    static func slot(of send: PendingSend) -> OutboxSlot {
        send.pacedChatID == nil ? .unpaced : .elsewhere
    }

    enum DrainResult: Equatable {
        case empty
        /// Calls are left: come back after this long (0: at once, behind the partition's other entries).
        case left(retryAfterMilliseconds: Int64)
        case storeFailed
    }

    /// How long a worker's next outbox call may wait for its slot: -1 (reserve nothing) once
    /// the worker is stopping.
    func outboxPatience(_ context: UpdateContext) -> Int64 {
        context.isCancelled ? -1 : min(context.waitBudgetMilliseconds, Self.workerPatienceMilliseconds)
    }

    /// Sends the subject's outbox in order, paced, until it is empty or this worker may wait no
    /// longer: one round trip to the store per call (the previous removed, the next read and its
    /// chat's slot taken), one for the bot-wide budget, and the call. `first`: the first step,
    /// already taken by the finish before (``Completion/advanceWithin``). A call that keeps
    /// failing goes to the dead letters after the attempts allowed.
    func drainOutbox(
        of subject: StateSubject, first: OutboxStep? = nil, dependencies: ThreadDependencies, context: UpdateContext
    ) -> DrainResult {
        var done: [UInt8]?
        var first = first
        // Jobs this recipient was given up on in this turn: their later calls are dropped.
        var givenUp: Set<OutboundJobID> = []
        while true {
            // Stopping, a sent call is still removed (it must not go twice), nothing reserved.
            let stopping = context.isCancelled
            let step: OutboxStep
            if let taken = first {
                step = taken
                first = nil
            } else {
                do {
                    step = try dependencies.state.advanceOutbox(
                        of: subject, after: done, maxWaitMilliseconds: outboxPatience(context), deadline: context.deadline)
                } catch {
                    return .storeFailed
                }
            }
            done = nil
            guard !stopping else { return step == .empty ? .empty : .left(retryAfterMilliseconds: 0) }
            switch step {
            case .empty:
                return .empty
            case .unreadable(let bytes):
                context.logger.warning("unreadable call dropped from an outbox")
                done = bytes
            case .next(let head, _) where OutboundJob.parse(sendID: head.id).map({ givenUp.contains($0.job) }) == true:
                done = head.encoded
            case .next(let head, let slot):
                switch sendPaced(head, slot: slot, dependencies: dependencies, context: context) {
                case .sent:
                    Counter(label: GatewayMetric.outboxSent).increment()
                    record(head, outcome: .delivered, dependencies: dependencies, context: context)
                    done = head.encoded
                case .refused(let error):
                    context.logger.warning(
                        "Bot API refused a call; not retried",
                        metadata: ["method": "\(head.call.name)", "send": "\(head.id)", LogKey.error: "\(error)"])
                    if let job = OutboundJob.parse(sendID: head.id)?.job { givenUp.insert(job) }
                    record(head, outcome: .failed(reason: error.refusal ?? "rejected"), dependencies: dependencies, context: context)
                    done = head.encoded
                case .failed(let error):
                    let failed = head.failedOnce()
                    context.logger.warning(
                        "Bot API call failed; it will be tried again",
                        metadata: [
                            "method": "\(head.call.name)", "send": "\(head.id)", "attempt": .stringConvertible(failed.attempts),
                            LogKey.error: "\(error)",
                        ])
                    do throws(StateStoreError) {
                        guard failed.attempts >= settings.queue.maxAttempts else {
                            try dependencies.state.replaceOutboxHead(of: subject, send: head, with: failed, deadline: context.deadline)
                            return .left(retryAfterMilliseconds: Self.backoffMilliseconds(attempt: failed.attempts))
                        }
                        guard let queue = dependencies.queue else { return .storeFailed }
                        let reason = "bot_api_\(error.shortDescription)"
                        try queue.deadLetter(failed, of: subject, reason: reason, attempts: failed.attempts, deadline: context.deadline)
                        Counter(label: GatewayMetric.outboxDeadLetters, dimensions: [("reason", reason)]).increment()
                        if let job = OutboundJob.parse(sendID: head.id)?.job { givenUp.insert(job) }
                        record(head, outcome: .failed(reason: reason), dependencies: dependencies, context: context)
                        context.logger.error(
                            "call dead-lettered after its last attempt",
                            metadata: ["method": "\(head.call.name)", "send": "\(head.id)", LogKey.reason: "\(reason)"])
                        done = head.encoded
                    } catch {
                        return .storeFailed
                    }
                case .notNow(let milliseconds):
                    return .left(retryAfterMilliseconds: milliseconds)
                }
            }
        }
    }

    /// The longest a worker waits for one call's slot while it holds a partition: a slot further
    /// off is left for a later turn (a note at the end of the partition), so one user's full
    /// window never holds up the other users of the partition.
    public static let workerPatienceMilliseconds: Int64 = 1000

    /// 1, 2, 4… s after failed attempts, at most 30.
    static func backoffMilliseconds(attempt: Int) -> Int64 {
        Int64(min(30, 1 << min(max(attempt, 1) - 1, 5))) * 1000
    }

    static func countFailure(of call: BotCall, _ error: BotAPIError) {
        Counter(label: GatewayMetric.botAPIErrors, dimensions: [("method", call.name), ("kind", error.shortDescription)]).increment()
    }
}
