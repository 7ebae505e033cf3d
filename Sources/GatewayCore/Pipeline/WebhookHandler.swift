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

    public init(
        secrets: [Secret], maxBodyBytes: Int, routes: RouteTable = .standard, botUsername: String? = nil,
        texts: ReplyTexts = .standard, clock: @escaping @Sendable () -> UInt64
    ) {
        self.secrets = secrets
        self.maxBodyBytes = maxBodyBytes
        self.routes = routes
        self.botUsername = botUsername
        self.texts = texts
        self.clock = clock
    }

    public init(config: GatewayConfig, routes: RouteTable = .standard, clock: @escaping @Sendable () -> UInt64) {
        self.init(
            secrets: config.webhookSecrets, maxBodyBytes: config.maxBodyBytes, routes: routes,
            botUsername: config.botUsername, clock: clock)
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
    public func handle(_ head: WebhookHead, body: [UInt8], logger: Logger) -> WebhookResponse {
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
        let (response, outcome) = answer(update, route: route)
        logger.info(
            "update handled",
            metadata: [
                LogKey.route: "\(route.label)", LogKey.outcome: "\(outcome.rawValue)",
                LogKey.latencyMilliseconds: .stringConvertible(elapsedMilliseconds(since: head)),
            ])
        return response
    }

    /// The answer that needs no service. Routes to services are decided here and delivered by
    /// the downstream stage.
    private func answer(_ update: Update, route: Route) -> (WebhookResponse, RequestOutcome) {
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
