/// An HTTP request made through libcurl.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The whole exchange's deadline, connection included. Under a millisecond nothing is sent.
    public var timeoutSeconds: Double
    public var connectTimeoutSeconds: Double
    /// The most of the answer's body read; past it the transfer stops with `tooLarge`.
    public var maxResponseBytes: Int

    public init(
        method: String = "GET", url: String, headers: [(name: String, value: String)] = [], body: [UInt8] = [],
        timeoutSeconds: Double, connectTimeoutSeconds: Double = 1, maxResponseBytes: Int = 16 << 20
    ) {
        self.maxResponseBytes = maxResponseBytes
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeoutSeconds = timeoutSeconds
        self.connectTimeoutSeconds = connectTimeoutSeconds
    }
}

/// The answer to an `HTTPRequest`: any status is an answer; only transport failures throw.
public struct HTTPResponse: Sendable {
    public var status: Int
    /// Header names lowercased.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.last(where: { $0.name == lowered })?.value
    }
}

/// A transport failure. Built from libcurl's result code only, never from its error buffer,
/// which can quote the URL, and a Bot API URL holds the bot token.
public struct HTTPClientError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// Refused, unreachable or unresolvable: the request was never sent.
        case connectFailed = "connect_failed"
        case timedOut = "timed_out"
        case tls = "tls_failed"
        /// The connection broke while sending or receiving.
        case transport = "transport_failed"
        case setup = "setup_failed"
        /// The answer was larger than the request allowed; reading stopped there.
        case tooLarge = "too_large"
    }

    public let kind: Kind
    /// libcurl's `CURLcode`.
    public let code: Int32

    public init(kind: Kind, code: Int32) {
        self.kind = kind
        self.code = code
    }

    public var shortDescription: String { kind.rawValue }
    public var description: String { "\(kind.rawValue) (curl code \(code))" }
}
