import CoreMetrics
import Logging

/// What one thread brings to each update: its own connections, used by it alone.
public struct ThreadDependencies {
    public var state: any StateStore
    public var services: any ServiceClient
    public var botAPI: any BotAPI
    public var outgoing: any OutgoingLimiter
    /// The streams: busy users' updates handed over, outboxes scheduled, dead letters, and in
    /// queue mode the front door. Nil only in tests of other things: what would go there then
    /// gets 503, so Telegram keeps it.
    public var queue: (any UpdateQueue)?
    /// Outbound jobs: the send API, their fan-out, their counts. Nil only in tests of other things.
    public var outbound: (any OutboundStore)?
    /// This thread's claim tokens.
    public let tokens: ClaimTokens

    public init(
        state: any StateStore, services: any ServiceClient, botAPI: any BotAPI, outgoing: any OutgoingLimiter = UnlimitedOutgoing(),
        queue: (any UpdateQueue)? = nil, outbound: (any OutboundStore)? = nil, tokens: ClaimTokens = ClaimTokens(prefix: "t")
    ) {
        self.state = state
        self.services = services
        self.botAPI = botAPI
        self.outgoing = outgoing
        self.queue = queue
        self.outbound = outbound
        self.tokens = tokens
    }
}

/// Tokens that name one claim of an update (and of its user's lease): unique per thread by a
/// counter, across threads and processes by the prefix. The first letter says who holds the
/// lease: `s` a webhook request, `w` a stream worker.
///
/// Thread-confined, like the connections beside it.
public final class ClaimTokens {
    private let prefix: String
    private var counter = 0

    /// `prefix`: random per thread (with the process id), so tokens never meet.
    public init(prefix: String) {
        self.prefix = prefix
    }

    public func next(for origin: BeginRequest.Origin) -> String {
        counter &+= 1
        // `s` or `w`, the prefix, `-` and the counter written into one new string (three
        // concatenations and a number's description cost about 2k instructions an update).
        var prefix = prefix
        let counter = Int64(counter)
        return prefix.withUTF8 { prefix in
            String(unsafeUninitializedCapacity: prefix.count + 2 + Digits.maximumCount) { buffer in
                buffer[0] = origin == .webhook ? UInt8(ascii: "s") : UInt8(ascii: "w")
                let end = UnsafeMutableBufferPointer(rebasing: buffer[1...]).initialize(fromContentsOf: prefix) + 1
                buffer[end] = UInt8(ascii: "-")
                return Digits.write(counter, into: buffer, at: end + 1)
            }
        }
    }
}

/// One update's life, the same on the webhook path and in stream workers, in stages: admit
/// (the request's head and body), decode, claim (the state store's one round trip), plan (the
/// route and its service), deliver (what may go now; the rest to the user's outbox), finish
/// (the state written, never lost). Each stage is an extension in its own file.
///
/// The webhook path never waits for anything: an update whose user is busy and the part of an
/// answer the chat's window does not allow now go to the user's stream, and Telegram is
/// answered at once. Stream workers (``StreamWorkers``) take them from there, in order, paced.
public struct UpdateProcessor: Sendable {
    public struct Settings: Sendable {
        public var secrets: [Secret]
        public var maxBodyBytes: Int
        public var routes: RouteTable
        public var botUsername: String?
        public var texts: ReplyTexts
        /// Send the last Bot API call as the webhook reply (Telegram executes it after our
        /// answer, and never tells whether it worked); off sends everything through the Bot API.
        public var webhookReply: Bool
        /// How long stored callback data lives: as long as a session.
        public var sessionTTLSeconds: Int
        /// Requests slower than this get a "slow request" warning with their timings.
        public var slowRequestSeconds: Double
        /// Every update's deadline, from its acceptance (see ``GatewayConfig/updateDeadlineSeconds``).
        public var deadlineSeconds: Double
        public var mode: DeliveryMode
        public var queue: QueueSettings

        public init(
            secrets: [Secret], maxBodyBytes: Int, routes: RouteTable = .standard, botUsername: String? = nil,
            texts: ReplyTexts = .standard, webhookReply: Bool = true, sessionTTLSeconds: Int = 86_400, slowRequestSeconds: Double = 5,
            deadlineSeconds: Double = 25, mode: DeliveryMode = .sync, queue: QueueSettings = QueueSettings()
        ) {
            self.secrets = secrets
            self.maxBodyBytes = maxBodyBytes
            self.routes = routes
            self.botUsername = botUsername
            self.texts = texts
            self.webhookReply = webhookReply
            self.sessionTTLSeconds = sessionTTLSeconds
            self.slowRequestSeconds = slowRequestSeconds
            self.deadlineSeconds = deadlineSeconds
            self.mode = mode
            self.queue = queue
        }

        public init(config: GatewayConfig, routes: RouteTable = .standard) {
            self.init(
                secrets: config.webhookSecrets, maxBodyBytes: config.maxBodyBytes, routes: routes, botUsername: config.botUsername,
                webhookReply: config.webhookReply, sessionTTLSeconds: config.sessionTTLSeconds,
                slowRequestSeconds: config.slowRequestSeconds, deadlineSeconds: config.updateDeadlineSeconds,
                mode: config.deliveryMode, queue: config.queue)
        }
    }

    public let settings: Settings
    let clock: GatewayClock
    /// Makes the internal id of a first-time user.
    let newInternalUserID: @Sendable () -> String
    let decoder = UpdateDecoder()
    let series = UpdateSeries()

    public init(settings: Settings, clock: GatewayClock, newInternalUserID: @escaping @Sendable () -> String) {
        self.settings = settings
        self.clock = clock
        self.newInternalUserID = newInternalUserID
    }

    // MARK: The webhook path

    /// Handles an admitted webhook request whose body has been read (at most `maxBodyBytes + 1`
    /// bytes), with this thread's connections, and answers at once: 200 for every update with
    /// the right secret, except 503 + Retry-After for what Telegram must deliver again.
    public func handle(_ head: WebhookHead, body: [UInt8], with dependencies: ThreadDependencies, logger: Logger) -> WebhookResponse {
        var context = UpdateContext(
            requestID: head.requestID, logger: logger, deadline: .after(seconds: settings.deadlineSeconds, from: head.acceptedAt),
            mayWait: false, clock: clock)
        if let rejection = checkBody(head, body: body, context: context) { return rejection }
        let update: Update
        let route: Route
        switch decode(body, state: dependencies.state, context: &context) {
        case .update(let decoded, let routed):
            (update, route) = (decoded, routed)
        case .malformed(let error):
            context.logger.warning(
                "undecodable update acknowledged",
                metadata: [
                    LogKey.outcome: "\(RequestOutcome.malformed.rawValue)", LogKey.reason: "\(error.shortDescription)",
                    LogKey.bodyBytes: .stringConvertible(body.count),
                    LogKey.latencyMilliseconds: .stringConvertible(context.elapsedMilliseconds(since: head.acceptedAt)),
                ])
            count(.malformed)
            return .acknowledged
        case .unresolved:
            // The button's long data could not be read back: Telegram delivers the press again.
            count(.deferred)
            return .retryLater(seconds: 1)
        }

        let (response, outcome) =
            settings.mode == .queue
            ? storeAtFrontDoor(update, route: route, body: body, dependencies: dependencies, context: &context)
            : respond(to: update, route: route, body: body, dependencies: dependencies, context: &context)
        let latency = context.elapsedMilliseconds(since: head.acceptedAt)
        let slow = latency > settings.slowRequestSeconds * 1000
        series.webhookSeconds.recordNanoseconds(Int64(latency * 1_000_000))
        if slow { Counter(label: GatewayMetric.slowRequests).increment() }
        var line = context.line
        (line.route, line.outcome, line.latencyMilliseconds) = (route.label, outcome.rawValue, latency)
        context.log(level: slow ? .warning : .info, slow ? "slow request" : "update handled", update: line)
        count(outcome, update: update, route: route)
        if context.line.degraded { Counter(label: GatewayMetric.failOpen).increment() }
        return response
    }

    /// Sync mode: claims the update and, when it may go now, plans, delivers and finishes it
    /// while Telegram waits; a busy user's update is handed to the user's stream.
    func respond(
        to update: Update, route: Route, body: [UInt8], dependencies: ThreadDependencies, context: inout UpdateContext
    ) -> (WebhookResponse, RequestOutcome) {
        if case .ignored = route { return (.acknowledged, .ignored) }
        guard let subject = StateSubject(update) else { return (.acknowledged, .ignored) }
        let own = ownAnswer(to: update, route: route)
        // The gateway's own one-message reply to a chat whose window lives with the user is
        // admitted in the same round trip as the claim: the gateway path costs one.
        var reply: PendingSend?
        if settings.webhookReply, let plan = own?.plan, plan.methods.count == 1, let method = plan.methods.first,
            let chat = method.pacedChatID, subject.ownsWindow(of: chat)
        {
            reply = PendingSend(method, requestID: context.requestID, index: 0)
        }
        let request = BeginRequest(
            updateID: update.id, subject: subject, needsSession: route.needsSession,
            newInternalUserID: route.needsSession ? newInternalUserID() : "", token: dependencies.tokens.next(for: .webhook),
            origin: .webhook, reply: reply)
        switch claim(request, update: update, state: dependencies.state, context: &context) {
        case .answer(let response, let outcome):
            return (response, outcome)
        case .answerAfterScheduling(let response, let outcome):
            return (schedule(subject, dependencies: dependencies, context: context) ? response : .retryLater(seconds: 1), outcome)
        case .handOver:
            return handOver(update, subject: subject, body: body, dependencies: dependencies, context: &context)
        case .busy:
            // Only a worker is told to wait; a webhook request never waits.
            return (.retryLater(seconds: 1), .deferred)
        case .proceed(let claim, let session, let admission, _):
            if let own, let reply {
                switch admission {
                case .now:
                    // Its parameters were written once, for the admission.
                    return (.webhookReply(reply.call), own.outcome)
                case .kept:
                    Counter(label: GatewayMetric.outboxKept).increment()
                    return (schedule(subject, dependencies: dependencies, context: context) ? .acknowledged : .retryLater(seconds: 1), own.outcome)
                case .none:
                    break
                }
            }
            return complete(
                update, route: route, own: own, subject: subject, claim: claim, session: session, dependencies: dependencies, context: &context)
        case .failedOpen(let attempted):
            // Processed without the store; its finish releases whatever the begin may have done.
            return complete(
                update, route: route, own: own, subject: subject, claim: attempted, session: nil, dependencies: dependencies, context: &context)
        }
    }

    /// Plans (the gateway's own answer or the service's), delivers what may go now and finishes.
    private func complete(
        _ update: Update, route: Route, own: (plan: ReplyPlan, outcome: RequestOutcome)?, subject: StateSubject, claim: Claim?,
        session: Session?, dependencies: ThreadDependencies, context: inout UpdateContext
    ) -> (WebhookResponse, RequestOutcome) {
        let (plan, outcome) = own ?? planAnswer(to: update, route: route, session: session, services: dependencies.services, context: &context)
        let methods = sendElsewhere(plan.methods, of: update, dependencies: dependencies, context: context)
        let delivery = deliverNow(methods, subject: subject, dependencies: dependencies, context: &context)
        var completion = Completion(
            subject: subject, updateID: update.id, claim: claim, stateChange: plan.stateChange, internalUserID: plan.internalUserID,
            origin: .webhook, reply: delivery.storedReply, tail: delivery.tail)
        completion.indexedInternalUserID = internalUserIDToIndex(session, plan: plan, of: subject, dependencies: dependencies)
        return (finishNow(completion, delivery: delivery, dependencies: dependencies, context: &context), outcome)
    }

    /// Counts an update by type, route and outcome; "none" for requests that never became one.
    func count(_ outcome: RequestOutcome, update: Update? = nil, route: Route? = nil) {
        series.count(outcome, type: update?.type.description ?? "none", route: route?.label ?? "none")
    }
}
