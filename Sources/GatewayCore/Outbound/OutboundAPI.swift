import CoreMetrics
import Logging

/// `POST /telegram-gateway/send` and `GET /telegram-gateway/send/ID`: the bot's own services
/// message any user through the gateway. A request is stored durably in one step (answered 202
/// only then) and fanned out by the stream workers into each recipient's outbox, so it is sent
/// in order per chat, within the pool-wide limits, once. See the Service Contracts article.
public struct OutboundAPI: Sendable {
    public static let sendPath = "/telegram-gateway/send"
    /// The largest request body: 10,000 chat ids and ten 20,000-unit texts fit with room.
    public static let maxBodyBytes = 1 << 20

    private let tokens: [Secret]
    private let maxBacklog: Int
    private let retryAfterSeconds: Int
    private let partitions: Int
    private let sessionTTLSeconds: Int
    private let deadlineSeconds: Double
    private let clock: GatewayClock

    public init(
        tokens: [Secret], maxBacklog: Int, retryAfterSeconds: Int, partitions: Int, sessionTTLSeconds: Int, deadlineSeconds: Double,
        clock: GatewayClock
    ) {
        self.tokens = tokens
        self.maxBacklog = maxBacklog
        self.retryAfterSeconds = retryAfterSeconds
        self.partitions = partitions
        self.sessionTTLSeconds = sessionTTLSeconds
        self.deadlineSeconds = deadlineSeconds
        self.clock = clock
    }

    public init(config: GatewayConfig, clock: GatewayClock) {
        self.init(
            tokens: config.serviceAPITokens, maxBacklog: config.outboundMaxBacklog, retryAfterSeconds: config.queue.retryAfterSeconds,
            partitions: config.queue.partitions, sessionTTLSeconds: config.sessionTTLSeconds, deadlineSeconds: config.updateDeadlineSeconds,
            clock: clock)
    }

    /// Whether `path` is one of this API's.
    public static func handles(_ path: String) -> Bool {
        path == sendPath || path.hasPrefix(sendPath + "/")
    }

    /// What can be refused before the body is read: the API switched off, the method, the
    /// token (compared in constant time; never logged), the declared length.
    public func admit(_ head: WebhookHead, path: String, logger: Logger) -> WebhookResponse? {
        guard !tokens.isEmpty else { return Self.answer(404, error: "the outbound API is off: set SERVICE_API_TOKEN") }
        let method = path == Self.sendPath ? "POST" : "GET"
        guard head.method == method else {
            return WebhookResponse(
                status: 405, headers: [("Allow", method), ("Content-Type", "application/json")], body: Self.error("use \(method)"))
        }
        guard let presented = Self.bearer(head.authorization), tokens.contains(where: { $0.matches(presented) }) else {
            logger.warning(
                "outbound request refused: missing or wrong token",
                metadata: [LogKey.requestID: "\(head.requestID)", LogKey.status: .stringConvertible(401)])
            Counter(label: GatewayMetric.outboundRefused, dimensions: [("reason", "token")]).increment()
            return WebhookResponse(
                status: 401, headers: [("WWW-Authenticate", "Bearer"), ("Content-Type", "application/json")],
                body: Self.error("missing or wrong bearer token"))
        }
        if let length = head.contentLength, length > Self.maxBodyBytes { return tooLarge() }
        return nil
    }

    /// Handles an admitted request whose body was read (at most `maxBodyBytes + 1` bytes).
    public func handle(_ head: WebhookHead, path: String, body: [UInt8], with dependencies: ThreadDependencies, logger: Logger) -> WebhookResponse {
        var logger = logger
        logger[metadataKey: LogKey.requestID] = "\(head.requestID)"
        let deadline = Deadline.after(seconds: deadlineSeconds, from: clock.now())
        guard let store = dependencies.outbound else { return unavailable("the outbound store is not configured", logger: logger) }
        guard path == Self.sendPath else { return status(of: String(path.dropFirst(Self.sendPath.count + 1)), store: store, deadline: deadline) }
        guard body.count <= Self.maxBodyBytes else { return tooLarge() }
        let request: OutboundRequest
        switch OutboundRequest.parse(body) {
        case .success(let parsed): request = parsed
        case .failure(let error):
            logger.warning("outbound request refused: invalid body", metadata: [LogKey.reason: "\(error.reason.prefix(120))"])
            Counter(label: GatewayMetric.outboundRefused, dimensions: [("reason", "invalid")]).increment()
            return Self.answer(400, error: error.reason)
        }
        var recipients: [Int64]
        var unknown: [String] = []
        switch request.recipients {
        case .chats(let chats):
            recipients = chats
        case .internalUsers(let ids):
            let resolved: [String: Int64]
            do {
                resolved = try store.resolve(internalUserIDs: ids, deadline: deadline)
            } catch {
                return unavailable("the state store is unavailable", logger: logger)
            }
            recipients = ids.compactMap { resolved[$0] }
            unknown = ids.filter { resolved[$0] == nil }
            guard !recipients.isEmpty else {
                return Self.answer(400, error: "none of the internal_user_ids has a live session; send by chat_ids instead")
            }
        }
        var seen = Set<Int64>()
        recipients = recipients.filter { seen.insert($0).inserted }
        let id = request.idempotencyKey.map { OutboundJobID.derived(fromKey: $0, partitions: partitions) } ?? .random(partitions: partitions)
        let templates = Self.templates(request.messages, state: dependencies.state, ttlSeconds: sessionTTLSeconds, deadline: deadline, logger: logger)
        let creation: OutboundCreation
        do {
            creation = try store.create(
                OutboundJob(id: id, recipients: recipients, templates: templates, unknown: unknown.count), maxBacklog: maxBacklog, deadline: deadline)
        } catch {
            return unavailable("the outbound store is unavailable", logger: logger)
        }
        var writer = JSONWriter()
        writer.field("id", id.description)
        switch creation {
        case .created:
            writer.field("recipients", Int64(recipients.count))
            Counter(label: GatewayMetric.outboundAccepted).increment()
            Counter(label: GatewayMetric.outboundRecipients).increment(by: recipients.count)
        case .existing(let count):
            writer.field("recipients", Int64(count))
            writer.field("duplicate", true)
        case .full:
            logger.warning("outbound request refused: the backlog is full", metadata: ["recipients": .stringConvertible(recipients.count)])
            Counter(label: GatewayMetric.outboundRefused, dimensions: [("reason", "full")]).increment()
            return WebhookResponse(
                status: 503, headers: [("Retry-After", "\(retryAfterSeconds)"), ("Content-Type", "application/json")],
                body: Self.error("the outbound backlog is over its bound (OUTBOUND_MAX_BACKLOG); try again later"))
        }
        if !unknown.isEmpty {
            writer.field("unknown_internal_user_ids", json: JSONWriter.array(unknown))
        }
        logger.info(
            "outbound request accepted",
            metadata: [
                "job": "\(id)", "recipients": .stringConvertible(recipients.count), "unknown": .stringConvertible(unknown.count),
                "duplicate": "\(creation != .created)",
            ])
        return WebhookResponse(status: 202, headers: [("Content-Type", "application/json")], body: writer.finish())
    }

    private func status(of text: String, store: any OutboundStore, deadline: Deadline) -> WebhookResponse {
        guard let id = OutboundJobID(text) else { return Self.answer(404, error: "no such request") }
        let status: OutboundStatus?
        do {
            status = try store.status(of: id, deadline: deadline)
        } catch {
            return WebhookResponse(
                status: 503, headers: [("Retry-After", "5"), ("Content-Type", "application/json")], body: Self.error("the store is unavailable"))
        }
        guard let status else { return Self.answer(404, error: "no such request (requests are kept DEDUPE_TTL after they are made)") }
        return WebhookResponse(status: 200, headers: [("Content-Type", "application/json")], body: Self.json(status))
    }

    /// The status as JSON: counts per recipient.
    public static func json(_ status: OutboundStatus) -> [UInt8] {
        var writer = JSONWriter()
        writer.field("id", status.id.description)
        writer.field("recipients", Int64(status.recipients))
        writer.field("delivered", Int64(status.delivered))
        writer.field("pending", Int64(status.pending))
        writer.object("failed") { writer in
            for reason in status.failed.keys.sorted() { writer.field(reason, Int64(status.failed[reason] ?? 0)) }
        }
        writer.field("unknown_internal_user_ids", Int64(status.unknown))
        return writer.finish()
    }

    /// The calls every recipient gets: each message's text split as usual, the keyboard on its
    /// last part, long callback data kept behind tokens.
    static func templates(
        _ messages: [(text: String, keyboard: InlineKeyboard?)], state: any StateStore, ttlSeconds: Int, deadline: Deadline, logger: Logger
    ) -> [CallTemplate] {
        var methods: [BotMethod] = []
        for message in messages {
            let parts = TextSplitter.split(message.text)
            for (index, part) in parts.enumerated() {
                methods.append(.sendMessage(chatID: 0, text: part, keyboard: index == parts.count - 1 ? message.keyboard : nil))
            }
        }
        let (shortened, dropped) = CallbackDataToken.shorten(methods, store: state, ttlSeconds: ttlSeconds, deadline: deadline)
        if dropped > 0 {
            logger.warning(
                "buttons with long callback data left out: the state store is unavailable", metadata: ["buttons": .stringConvertible(dropped)])
        }
        return shortened.compactMap(CallTemplate.init)
    }

    private func tooLarge() -> WebhookResponse {
        Counter(label: GatewayMetric.outboundRefused, dimensions: [("reason", "too_large")]).increment()
        return Self.answer(413, error: "the body is over \(Self.maxBodyBytes) bytes")
    }

    private func unavailable(_ reason: String, logger: Logger) -> WebhookResponse {
        logger.warning("outbound request not stored", metadata: [LogKey.reason: "\(reason)"])
        return WebhookResponse(status: 503, headers: [("Retry-After", "5"), ("Content-Type", "application/json")], body: Self.error(reason))
    }

    private static func answer(_ status: Int, error: String) -> WebhookResponse {
        WebhookResponse(status: status, headers: [("Content-Type", "application/json")], body: Self.error(error))
    }

    private static func error(_ reason: String) -> [UInt8] {
        var writer = JSONWriter()
        writer.field("error", reason)
        return writer.finish()
    }

    /// The token of `Authorization: Bearer TOKEN`.
    static func bearer(_ header: [UInt8]?) -> [UInt8]? {
        let prefix = Array("Bearer ".utf8)
        guard let header, header.count > prefix.count,
            zip(header, prefix).allSatisfy({ $0 == $1 || ($0 | 0x20) == ($1 | 0x20) })
        else { return nil }
        return Array(header.dropFirst(prefix.count))
    }
}
