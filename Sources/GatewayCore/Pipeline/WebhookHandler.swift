import Logging

/// The request pipeline, free of I/O: checks a webhook request, decodes the update, routes it
/// and decides the answer. Telegram gets 200 for every request that carries the right secret.
public struct WebhookHandler: Sendable {
    private let secrets: [Secret]
    private let maxBodyBytes: Int
    private let routes: RouteTable
    private let botUsername: String?
    private let texts: ReplyTexts
    private let decoder = UpdateDecoder()
    /// Monotonic nanoseconds, for latencies.
    private let clock: @Sendable () -> UInt64
    /// Makes the internal id of a first-time user.
    private let newInternalUserID: @Sendable () -> String

    public init(
        secrets: [Secret], maxBodyBytes: Int, routes: RouteTable = .standard, botUsername: String? = nil,
        texts: ReplyTexts = .standard, clock: @escaping @Sendable () -> UInt64,
        newInternalUserID: @escaping @Sendable () -> String
    ) {
        self.secrets = secrets
        self.maxBodyBytes = maxBodyBytes
        self.routes = routes
        self.botUsername = botUsername
        self.texts = texts
        self.clock = clock
        self.newInternalUserID = newInternalUserID
    }

    public init(
        config: GatewayConfig, routes: RouteTable = .standard, clock: @escaping @Sendable () -> UInt64,
        newInternalUserID: @escaping @Sendable () -> String
    ) {
        self.init(
            secrets: config.webhookSecrets, maxBodyBytes: config.maxBodyBytes, routes: routes,
            botUsername: config.botUsername, clock: clock, newInternalUserID: newInternalUserID)
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

    /// Handles an admitted request whose body has been read (at most `maxBodyBytes + 1` bytes).
    /// `state` is this thread's store; when it fails, the update is still routed (fail-open).
    public func handle(_ head: WebhookHead, body: [UInt8], state: some StateStore, logger: Logger) -> WebhookResponse {
        var logger = logger
        logger[metadataKey: LogKey.requestID] = "\(head.requestID)"
        if body.count > maxBodyBytes {
            return reject(head, .tooLarge, WebhookResponse(status: 413), logger)
        }
        let update: Update
        switch decoder.decode(body) {
        case .success(let decoded):
            update = decoded
        case .failure(let error):
            logger.warning(
                "undecodable update acknowledged",
                metadata: [
                    LogKey.outcome: "\(RequestOutcome.malformed.rawValue)", LogKey.reason: "\(error.shortDescription)",
                    LogKey.bodyBytes: .stringConvertible(body.count), LogKey.latencyMilliseconds: .stringConvertible(elapsedMilliseconds(since: head)),
                ])
            return .acknowledged
        }

        logger[metadataKey: LogKey.updateID] = .stringConvertible(update.id)
        logger[metadataKey: LogKey.updateType] = "\(update.type)"
        if let user = update.user { logger[metadataKey: LogKey.userID] = .stringConvertible(user.id) }

        let route = routes.route(update, botUsername: botUsername)
        let (response, outcome, claim) = process(update, route: route, state: state, logger: &logger)
        if let claim {
            do {
                try state.finish(Completion(claim: claim))
            } catch {
                // The claim expires on its own; the update was answered, so nothing is lost.
                logger[metadataKey: LogKey.degraded] = "true"
            }
        }
        logger.info(
            "update handled",
            metadata: [
                LogKey.route: "\(route.label)", LogKey.outcome: "\(outcome.rawValue)",
                LogKey.latencyMilliseconds: .stringConvertible(elapsedMilliseconds(since: head)),
            ])
        return response
    }

    /// Applies the state store's decision, then answers. Returns the claim to finish, if any.
    private func process(_ update: Update, route: Route, state: some StateStore, logger: inout Logger)
        -> (WebhookResponse, RequestOutcome, Claim?)
    {
        if case .ignored = route { return (.acknowledged, .ignored, nil) }
        guard let subject = StateSubject(update) else {
            let (response, outcome) = answer(update, route: route, session: nil)
            return (response, outcome, nil)
        }
        let request = BeginRequest(
            updateID: update.id, subject: subject, needsSession: route.needsSession,
            newInternalUserID: route.needsSession ? newInternalUserID() : "")
        let decision: BeginDecision
        do {
            decision = try state.begin(request)
        } catch {
            // Fail open: no rate limit, no session, no dedupe; the store's adapter warns (rate-limited).
            logger[metadataKey: LogKey.degraded] = "true"
            let (response, outcome) = answer(update, route: route, session: nil)
            return (response, outcome, nil)
        }
        switch decision {
        case .duplicate:
            return (.acknowledged, .duplicate, nil)
        case .inProgress(let seconds), .busy(let seconds):
            return (.retryLater(seconds: seconds), .deferred, nil)
        case .limited(let warn):
            return (limitedReply(update, warn: warn), .rateLimited, nil)
        case .proceed(let claim, let session):
            let (response, outcome) = answer(update, route: route, session: session)
            return (response, outcome, claim)
        }
    }

    /// A limited message gets the friendly warning once per window; a limited button press is
    /// always answered (with the warning when due) so the button stops spinning.
    private func limitedReply(_ update: Update, warn: Bool) -> WebhookResponse {
        switch update.content {
        case .callbackQuery(let query):
            return .webhookReply(.answerCallbackQuery(callbackQueryID: query.id, text: warn ? texts.rateLimited : nil, showAlert: false))
        default:
            guard warn, let chat = update.chat else { return .acknowledged }
            return .webhookReply(.sendMessage(chatID: chat.id, text: texts.rateLimited))
        }
    }

    /// The answer that needs no service. Routes to services are decided here and delivered by
    /// the downstream stage.
    private func answer(_ update: Update, route: Route, session: Session?) -> (WebhookResponse, RequestOutcome) {
        switch route {
        case .unknownCommand:
            guard let chat = update.chat else { return (.acknowledged, .ignored) }
            return (.webhookReply(.sendMessage(chatID: chat.id, text: texts.unknownCommand)), .replied)
        case .unknownCallback:
            guard case .callbackQuery(let query) = update.content else { return (.acknowledged, .ignored) }
            return (
                .webhookReply(.answerCallbackQuery(callbackQueryID: query.id, text: texts.unknownCallback, showAlert: false)),
                .replied
            )
        case .ignored:
            return (.acknowledged, .ignored)
        case .command, .callback, .text:
            return (.acknowledged, .routed)
        }
    }

    private func reject(_ head: WebhookHead, _ outcome: RequestOutcome, _ response: WebhookResponse, _ logger: Logger)
        -> WebhookResponse
    {
        logger.warning(
            "webhook request rejected",
            metadata: [
                LogKey.requestID: "\(head.requestID)", LogKey.outcome: "\(outcome.rawValue)",
                LogKey.status: .stringConvertible(response.status), LogKey.latencyMilliseconds: .stringConvertible(elapsedMilliseconds(since: head)),
            ])
        return response
    }

    private func elapsedMilliseconds(since head: WebhookHead) -> Double {
        let now = clock()
        let elapsed = now >= head.acceptedAt ? now - head.acceptedAt : 0
        return Double(elapsed / 1000) / 1000
    }
}
