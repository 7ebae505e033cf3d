/// What the FastCGI adapter knows of a request before reading its body.
public struct WebhookHead: Sendable {
    public var method: String
    /// The `X-Telegram-Bot-Api-Secret-Token` header's bytes, if sent.
    public var secretToken: [UInt8]?
    /// The `Authorization` header's bytes, if sent (the outbound API's bearer token).
    public var authorization: [UInt8]?
    /// The declared body length, if any; the body actually read is checked again.
    public var contentLength: Int?
    /// nginx's `$request_id`, or one the adapter made up.
    public var requestID: String
    /// Monotonic nanoseconds when the request was accepted, for the latency in its log line.
    public var acceptedAt: UInt64

    public init(
        method: String, secretToken: [UInt8]?, contentLength: Int?, requestID: String, acceptedAt: UInt64, authorization: [UInt8]? = nil
    ) {
        self.method = method
        self.secretToken = secretToken
        self.authorization = authorization
        self.contentLength = contentLength
        self.requestID = requestID
        self.acceptedAt = acceptedAt
    }
}

/// The HTTP answer to one webhook request.
public struct WebhookResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func == (lhs: WebhookResponse, rhs: WebhookResponse) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body
            && lhs.headers.map(\.name) == rhs.headers.map(\.name) && lhs.headers.map(\.value) == rhs.headers.map(\.value)
    }

    /// 200 with nothing for Telegram to execute.
    public static let acknowledged = WebhookResponse(status: 200)

    /// 503 asking Telegram to deliver the update again after `seconds`.
    public static func retryLater(seconds: Int) -> WebhookResponse {
        WebhookResponse(status: 503, headers: [("Retry-After", "\(max(1, seconds))")])
    }

    /// 200 whose body is a Bot API call that Telegram executes on our behalf.
    public static func webhookReply(_ method: BotMethod) -> WebhookResponse {
        WebhookResponse(status: 200, headers: [("Content-Type", "application/json")], body: method.webhookReplyBody)
    }

    /// 200 whose body is `call` with its `"method"`: its parameters object, the name first.
    public static func webhookReply(_ call: BotCall) -> WebhookResponse {
        var body = Array(#"{"method":"#.utf8)
        JSONWriter.appendString(call.name, to: &body)
        let rest = call.parameters.dropFirst()  // the parameters' own "{"
        if rest.first != UInt8(ascii: "}") { body.append(UInt8(ascii: ",")) }
        body += rest
        return WebhookResponse(status: 200, headers: [("Content-Type", "application/json")], body: body)
    }
}

/// How one request ended, as logged and counted.
public enum RequestOutcome: String, Sendable {
    /// Answered with a webhook reply.
    case replied
    /// Queue mode: stored for a worker, acknowledged.
    case queued
    /// The service failed, timed out or answered nonsense: the user got the generic apology.
    case serviceFailed = "service_failed"
    /// Nothing to do for this update.
    case ignored
    /// The body is not an update; acknowledged so Telegram does not resend it forever.
    case malformed
    /// Processed before (a redelivery): acknowledged, not processed again.
    case duplicate
    /// Over the user's rate limit: not routed.
    case rateLimited = "rate_limited"
    /// Not taken now (being processed by another responder, the stream full or unreachable, the
    /// store needed and failing): 503 with Retry-After, so Telegram delivers it again later
    /// instead of it being lost.
    case deferred
    /// The body ended before its declared length: 503, so Telegram delivers it again.
    case incompleteBody = "incomplete_body"
    case rejectedMethod = "rejected_method"
    case rejectedSecret = "rejected_secret"
    case tooLarge = "too_large"
}
