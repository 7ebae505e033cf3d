import CoreMetrics
import Logging

/// What one worker thread brings to each request: its own connections, used by it alone.
public struct ThreadDependencies {
    public var state: any StateStore
    public var services: any ServiceClient
    public var botAPI: any BotAPI
    public var outgoing: any OutgoingLimiter
    /// Queue mode: where the responder stores updates instead of processing them.
    public var queue: (any UpdateQueue)?

    public init(
        state: any StateStore, services: any ServiceClient, botAPI: any BotAPI, outgoing: any OutgoingLimiter = UnlimitedOutgoing(),
        queue: (any UpdateQueue)? = nil
    ) {
        self.queue = queue
        self.state = state
        self.services = services
        self.botAPI = botAPI
        self.outgoing = outgoing
    }
}

/// The request pipeline, free of I/O: checks a webhook request, decodes the update, routes it
/// and decides the answer. Telegram gets 200 for every request that carries the right secret.
public struct WebhookHandler: Sendable {
    private let secrets: [Secret]
    private let maxBodyBytes: Int
    let routes: RouteTable
    let botUsername: String?
    let texts: ReplyTexts
    /// Send the last Bot API call as the webhook reply (Telegram executes it after our answer,
    /// and never tells whether it worked); off sends everything through the Bot API.
    private let webhookReply: Bool
    let decoder = UpdateDecoder()
    /// Monotonic nanoseconds, for latencies.
    let clock: @Sendable () -> UInt64
    /// Makes the internal id of a first-time user.
    private let newInternalUserID: @Sendable () -> String
    /// How long stored callback data lives: as long as a session.
    private let sessionTTLSeconds: Int
    /// Requests slower than this get a "slow request" warning with their timings.
    private let slowRequestMilliseconds: Double

    public init(
        secrets: [Secret], maxBodyBytes: Int, routes: RouteTable = .standard, botUsername: String? = nil,
        texts: ReplyTexts = .standard, webhookReply: Bool = true, sessionTTLSeconds: Int = 86_400,
        slowRequestSeconds: Double = 5, clock: @escaping @Sendable () -> UInt64,
        newInternalUserID: @escaping @Sendable () -> String
    ) {
        self.secrets = secrets
        self.maxBodyBytes = maxBodyBytes
        self.routes = routes
        self.botUsername = botUsername
        self.texts = texts
        self.webhookReply = webhookReply
        self.sessionTTLSeconds = sessionTTLSeconds
        self.slowRequestMilliseconds = slowRequestSeconds * 1000
        self.clock = clock
        self.newInternalUserID = newInternalUserID
    }

    public init(
        config: GatewayConfig, routes: RouteTable = .standard, clock: @escaping @Sendable () -> UInt64,
        newInternalUserID: @escaping @Sendable () -> String
    ) {
        self.init(
            secrets: config.webhookSecrets, maxBodyBytes: config.maxBodyBytes, routes: routes,
            botUsername: config.botUsername, webhookReply: config.webhookReply, sessionTTLSeconds: config.sessionTTLSeconds,
            slowRequestSeconds: config.slowRequestSeconds, clock: clock,
            newInternalUserID: newInternalUserID)
    }

    /// Checks what is known before the body is read. Returns the rejection to send, or `nil`
    /// when the body should be read and passed to `handle`.
    public func admit(_ head: WebhookHead, logger: Logger) -> WebhookResponse? {
        if head.method != "POST" {
            return reject(head, .rejectedMethod, WebhookResponse(status: 405, headers: [("Allow", "POST")]), logger)
        }
        // nginx already checks the secret; the responder may be reachable without nginx, so check again.
        guard let token = head.secretToken, secrets.contains(where: { $0.matches(token) }) else {
            return reject(head, .rejectedSecret, WebhookResponse(status: 403), logger)
        }
        if let length = head.contentLength, length > maxBodyBytes {
            return reject(head, .tooLarge, WebhookResponse(status: 413), logger)
        }
        return nil
    }

    /// Handles an admitted request whose body has been read (at most `maxBodyBytes + 1` bytes),
    /// with this thread's connections. A failing state store is skipped (fail-open); a failing
    /// service gets the user the generic apology; Telegram gets 200 either way.
    public func handle(_ head: WebhookHead, body: [UInt8], with dependencies: ThreadDependencies, logger: Logger) -> WebhookResponse {
        var logger = logger
        logger[metadataKey: LogKey.requestID] = "\(head.requestID)"
        if body.count > maxBodyBytes {
            return reject(head, .tooLarge, WebhookResponse(status: 413), logger)
        }
        let update: Update
        switch decoder.decode(body) {
        case .success(let decoded):
            update = CallbackDataToken.resolve(decoded, store: dependencies.state)
        case .failure(let error):
            logger.warning(
                "undecodable update acknowledged",
                metadata: [
                    LogKey.outcome: "\(RequestOutcome.malformed.rawValue)", LogKey.reason: "\(error.shortDescription)",
                    LogKey.bodyBytes: .stringConvertible(body.count), LogKey.latencyMilliseconds: .stringConvertible(elapsedMilliseconds(since: head)),
                ])
            Self.count(.malformed)
            return .acknowledged
        }

        logger[metadataKey: LogKey.updateID] = .stringConvertible(update.id)
        logger[metadataKey: LogKey.updateType] = "\(update.type)"
        if let user = update.user { logger[metadataKey: LogKey.userID] = .stringConvertible(user.id) }

        let route = routes.route(update, botUsername: botUsername)
        let response: WebhookResponse, outcome: RequestOutcome
        if let queue = dependencies.queue {
            (response, outcome) = enqueue(update, route: route, body: body, queue: queue, logger: &logger)
        } else {
            switch begin(update, route: route, queued: false, state: dependencies.state, logger: &logger) {
            case .answer(let early, let earlyOutcome):
                (response, outcome) = (early, earlyOutcome)
            case .proceed(let claim, let session):
                let step = Step(update: update, route: route, claim: claim, session: session, requestID: head.requestID)
                (response, outcome) = complete(step, with: dependencies, webhookReply: webhookReply, logger: &logger)
                    ?? (.acknowledged, .serviceFailed)
            }
        }
        let latency = elapsedMilliseconds(since: head)
        logger.log(
            level: latency > slowRequestMilliseconds ? .warning : .info,
            latency > slowRequestMilliseconds ? "slow request" : "update handled",
            metadata: [
                LogKey.route: "\(route.label)", LogKey.outcome: "\(outcome.rawValue)",
                LogKey.latencyMilliseconds: .stringConvertible(latency),
            ])
        Self.count(outcome, update: update, route: route)
        if logger[metadataKey: LogKey.degraded] != nil { Counter(label: GatewayMetric.degraded).increment() }
        return response
    }

    /// An update the state store let through, with what processing it needs.
    struct Step {
        var update: Update
        var route: Route
        var claim: Claim?
        var session: Session?
        var requestID: String
        /// Queue mode: the callback query was answered when the update was enqueued.
        var callbackAnswered = false
    }

    /// Plans, delivers and finishes `step`. With `deferFailure`, a failed service call returns
    /// nil having sent nothing and kept the claim, so the update can be tried again.
    func complete(
        _ step: Step, with dependencies: ThreadDependencies, webhookReply: Bool, deferFailure: Bool = false, logger: inout Logger
    ) -> (WebhookResponse, RequestOutcome)? {
        let planStarted = clock()
        let (plan, outcome) = plan(step.update, route: step.route, session: step.session, requestID: step.requestID, services: dependencies.services, logger: logger)
        if deferFailure, outcome == .serviceFailed { return nil }
        let deliveryStarted = clock()
        logger[metadataKey: LogKey.serviceMilliseconds] = .stringConvertible(Self.milliseconds(deliveryStarted &- planStarted))
        var (methods, dropped) = CallbackDataToken.shorten(plan.methods, store: dependencies.state, ttlSeconds: sessionTTLSeconds)
        if dropped > 0 {
            logger.warning("buttons with long callback data left out: the state store is unavailable", metadata: ["buttons": .stringConvertible(dropped)])
        }
        if step.callbackAnswered {
            methods.removeAll { if case .answerCallbackQuery = $0 { true } else { false } }
        }
        let response = deliver(methods, via: dependencies.botAPI, pacedBy: dependencies.outgoing, webhookReply: webhookReply, logger: logger)
        logger[metadataKey: LogKey.deliveryMilliseconds] = .stringConvertible(Self.milliseconds(clock() &- deliveryStarted))
        if let claim = step.claim {
            do {
                try dependencies.state.finish(Completion(claim: claim, stateChange: plan.stateChange, internalUserID: plan.internalUserID))
            } catch {
                // The claim expires on its own; the update was answered, so nothing is lost.
                logger[metadataKey: LogKey.degraded] = "true"
            }
        }
        return (response, outcome)
    }

    enum Start {
        /// Answer now without processing (duplicate, deferred, rate limited, ignored).
        case answer(WebhookResponse, RequestOutcome)
        /// Process; finish `claim` afterwards if there is one.
        case proceed(Claim?, Session?)
    }

    /// Asks the state store whether and how to process the update.
    func begin(_ update: Update, route: Route, queued: Bool, replay: Bool = false, state: any StateStore, logger: inout Logger) -> Start {
        if case .ignored = route { return .answer(.acknowledged, .ignored) }
        guard let subject = StateSubject(update) else { return .proceed(nil, nil) }
        var request = BeginRequest(
            updateID: update.id, subject: subject, needsSession: route.needsSession,
            newInternalUserID: route.needsSession ? newInternalUserID() : "", queued: queued)
        request.replay = replay
        let decision: BeginDecision
        do {
            decision = try state.begin(request)
        } catch {
            // Fail open: no rate limit, no session, no dedupe; the store's adapter warns (rate-limited).
            logger[metadataKey: LogKey.degraded] = "true"
            return .proceed(nil, nil)
        }
        switch decision {
        case .duplicate:
            return .answer(.acknowledged, .duplicate)
        case .inProgress(let seconds), .busy(let seconds):
            return .answer(.retryLater(seconds: seconds), .deferred)
        case .limited(let warn):
            return .answer(limitedReply(update, warn: warn), .rateLimited)
        case .proceed(let claim, let session):
            return .proceed(claim, session)
        }
    }

    /// A limited message gets the friendly warning once per window; a limited button press is
    /// always answered (with the warning when due) so the button stops spinning.
    func limitedReply(_ update: Update, warn: Bool) -> WebhookResponse {
        switch update.content {
        case .callbackQuery(let query):
            return .webhookReply(.answerCallbackQuery(callbackQueryID: query.id, text: warn ? texts.rateLimited : nil, showAlert: false))
        default:
            guard warn, let chat = update.chat else { return .acknowledged }
            return .webhookReply(.sendMessage(chatID: chat.id, text: texts.rateLimited))
        }
    }

    /// Decides the Bot API calls for a routed update, calling its service where it has one.
    private func plan(
        _ update: Update, route: Route, session: Session?, requestID: String, services: any ServiceClient, logger: Logger
    ) -> (ReplyPlan, RequestOutcome) {
        switch route {
        case .unknownCommand:
            guard let chatID = update.chat?.id else { return (ReplyPlan(methods: []), .ignored) }
            return (ReplyPlan(methods: [.sendMessage(chatID: chatID, text: texts.unknownCommand)]), .replied)
        case .unknownCallback:
            guard case .callbackQuery(let query) = update.content else { return (ReplyPlan(methods: []), .ignored) }
            return (
                ReplyPlan(methods: [.answerCallbackQuery(callbackQueryID: query.id, text: texts.unknownCallback, showAlert: false)]),
                .replied
            )
        case .ignored, .command(_, .generic), .text(.generic):
            return (ReplyPlan(methods: []), .ignored)
        case .callback(let prefix, .generic):
            return (.forGenericCallback(prefix: prefix, update: update), .replied)
        case .command(_, .service(let service)), .callback(_, .service(let service)), .text(.service(let service)):
            let request = ServiceRequest(requestID: requestID, update: update, route: route, session: session)
            let failure: ServiceCallError
            let started = clock()
            defer {
                Timer(label: GatewayMetric.serviceSeconds, dimensions: [("service", service.rawValue)])
                    .recordNanoseconds(Int64(truncatingIfNeeded: clock() &- started))
            }
            do {
                let body = try services.call(service, body: request.body)
                switch ServiceAnswer.parse(body, isCallback: update.type == .callbackQuery) {
                case .success(let answer): return (.forAnswer(answer, to: update), .replied)
                case .failure(let error): failure = error
                }
            } catch {
                failure = error
            }
            logger.warning(
                "service call failed; the user gets the generic apology",
                metadata: ["service": "\(service)", LogKey.error: "\(failure.shortDescription)"])
            Counter(label: GatewayMetric.serviceErrors, dimensions: [("service", service.rawValue), ("error", failure.shortDescription)]).increment()
            return (.forFailure(of: update, texts: texts), .serviceFailed)
        }
    }

    /// Sends every call but the last through the Bot API, in order, and returns the last as the
    /// webhook reply. Sending an earlier one as the reply would reorder the messages: Telegram
    /// executes the reply only after our answer. New messages wait for their slot in the pool's
    /// outgoing budget; one that cannot get a slot in time is left out and logged.
    private func deliver(
        _ methods: [BotMethod], via botAPI: any BotAPI, pacedBy outgoing: any OutgoingLimiter, webhookReply: Bool, logger: Logger
    ) -> WebhookResponse {
        for (index, method) in methods.enumerated() {
            let isReply = webhookReply && index == methods.count - 1
            // Wait for this message's slot, then send it at once, so the spacing holds.
            if case .sendMessage(let chatID, _, _) = method, !outgoing.awaitSlot(chatID: chatID, throughBotAPI: !isReply) {
                logger.warning("outgoing limit reached; message not sent", metadata: [LogKey.chatID: .stringConvertible(chatID)])
                Counter(label: GatewayMetric.outgoingDropped).increment()
                continue
            }
            if isReply { return .webhookReply(method) }
            do {
                try botAPI.call(method)
            } catch {
                logger.warning("Bot API call failed", metadata: ["method": "\(method.name)", LogKey.error: "\(error)"])
                Counter(label: GatewayMetric.botAPIErrors, dimensions: [("method", method.name), ("kind", error.shortDescription)]).increment()
            }
        }
        return .acknowledged
    }

    func reject(_ head: WebhookHead, _ outcome: RequestOutcome, _ response: WebhookResponse, _ logger: Logger)
        -> WebhookResponse
    {
        Self.count(outcome)
        logger.warning(
            "webhook request rejected",
            metadata: [
                LogKey.requestID: "\(head.requestID)", LogKey.outcome: "\(outcome.rawValue)",
                LogKey.status: .stringConvertible(response.status), LogKey.latencyMilliseconds: .stringConvertible(elapsedMilliseconds(since: head)),
            ])
        return response
    }

    /// Counts an update by type, route and outcome; "none" for requests that never became one.
    static func count(_ outcome: RequestOutcome, update: Update? = nil, route: Route? = nil) {
        Counter(label: GatewayMetric.updates, dimensions: [
            ("type", update?.type.description ?? "none"), ("route", route?.label ?? "none"), ("outcome", outcome.rawValue),
        ]).increment()
    }

    static func milliseconds(_ nanoseconds: UInt64) -> Double {
        Double(nanoseconds / 1000) / 1000
    }

    func elapsedMilliseconds(since head: WebhookHead) -> Double {
        let now = clock()
        let elapsed = now >= head.acceptedAt ? now - head.acceptedAt : 0
        return Double(elapsed / 1000) / 1000
    }
}
