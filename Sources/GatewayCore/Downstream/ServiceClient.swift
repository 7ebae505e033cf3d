/// Calls internal services. One client per thread (it reuses connections).
public protocol ServiceClient {
    /// POSTs `body` to `service` and returns the answer's body, or why there is none. The
    /// client applies the service's timeout, its retry rule and its circuit breaker.
    func call(_ service: ServiceName, body: [UInt8]) throws(ServiceCallError) -> [UInt8]
}

/// Calls the Telegram Bot API. One client per thread.
public protocol BotAPI {
    /// Makes one call, honouring 429's `retry_after` while it is short and retrying once after
    /// a server or network error; "message is not modified" counts as success.
    func call(_ method: BotMethod) throws(BotAPIError)
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

    /// 429 with a `retry_after` too long to wait for.
    public static func rateLimited() -> BotAPIError { BotAPIError(code: .rateLimited, status: 429) }
    /// A 4xx other than 429: a bad request, a blocked bot, a deleted message.
    public static func rejected(status: Int) -> BotAPIError { BotAPIError(code: .rejected, status: status) }
    public static func server(status: Int) -> BotAPIError { BotAPIError(code: .server, status: status) }
    public static let transport = BotAPIError(code: .transport, status: nil)

    public var shortDescription: String { code.rawValue }
    public var description: String { status.map { "\(code.rawValue) (\($0))" } ?? code.rawValue }
}
