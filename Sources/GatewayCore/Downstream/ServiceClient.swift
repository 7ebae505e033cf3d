/// Calls internal services. One client per thread (it reuses connections).
public protocol ServiceClient {
    /// POSTs `body` to `service` and returns the answer's body, or why there is none. The
    /// client applies the service's timeout (cut to what `deadline` leaves), its retry rule and
    /// its circuit breaker.
    func call(_ service: ServiceName, body: [UInt8], deadline: Deadline) throws(ServiceCallError) -> [UInt8]
}

/// Calls the Telegram Bot API. One client per thread.
public protocol BotAPI {
    /// Makes one call within `deadline`, retrying once at once after a server or network error.
    /// A 429 is thrown with its `retry_after`, never waited out here: the caller pauses the
    /// pool's sending and keeps the call for later. "message is not modified" counts as success.
    func call(_ call: BotCall, deadline: Deadline) throws(BotAPIError)
}

/// Why a Bot API call failed after the client's retries. Bounded for logs and metric labels.
public struct BotAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Code: String, Sendable {
        case rateLimited = "rate_limited"
        case rejected
        case server = "server_error"
        case transport = "transport_failed"
    }

    private let code: Code
    /// The Bot API's `error_code` where it gave one.
    public let status: Int?
    /// A 429's `retry_after`, in seconds.
    public let retryAfterSeconds: Int?
    /// Why Telegram refused a call, as a bounded label: `blocked` (403: blocked by the user,
    /// deactivated, removed from the chat), `chat_not_found`, `bad_request`, `rejected_STATUS`.
    public let refusal: String?

    private init(code: Code, status: Int?, retryAfterSeconds: Int? = nil, refusal: String? = nil) {
        self.code = code
        self.status = status
        self.retryAfterSeconds = retryAfterSeconds
        self.refusal = refusal
    }

    /// 429 with a `retry_after` this call could not wait for.
    public static func rateLimited(retryAfterSeconds: Int = 1) -> BotAPIError {
        BotAPIError(code: .rateLimited, status: 429, retryAfterSeconds: max(0, retryAfterSeconds))
    }
    /// A 4xx other than 429: a bad request, a blocked bot, a deleted message. Final.
    public static func rejected(status: Int, description: String? = nil) -> BotAPIError {
        let refusal =
            switch status {
            case 403: "blocked"
            case 400 where description?.lowercased().contains("chat not found") == true: "chat_not_found"
            case 400: "bad_request"
            default: "rejected_\(status)"
            }
        return BotAPIError(code: .rejected, status: status, refusal: refusal)
    }

    public static func == (lhs: BotAPIError, rhs: BotAPIError) -> Bool {
        lhs.code == rhs.code && lhs.status == rhs.status && lhs.retryAfterSeconds == rhs.retryAfterSeconds
    }
    public static func server(status: Int) -> BotAPIError { BotAPIError(code: .server, status: status) }
    public static let transport = BotAPIError(code: .transport, status: nil)

    /// Whether trying again later may succeed (Telegram did not refuse the call itself).
    public var isRetryable: Bool { code != .rejected }

    public var shortDescription: String { code.rawValue }
    public var description: String { status.map { "\(code.rawValue) (\($0))" } ?? code.rawValue }
}
