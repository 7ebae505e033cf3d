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
    /// The header lines as received, status line included.
    private let headerLines: [UInt8]
    public var body: [UInt8]

    init(status: Int, headerLines: [UInt8], body: [UInt8]) {
        self.status = status
        self.headerLines = headerLines
        self.body = body
    }

    /// The headers in order, names lowercased (ASCII), values without surrounding blanks.
    public var headers: [(name: String, value: String)] {
        let isBlank = { (byte: UInt8) in byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
        return headerLines.split(separator: UInt8(ascii: "\n")).compactMap { line in
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return nil }
            let name = String(decoding: line[..<colon].map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
            var value = line[(colon + 1)...]
            while let first = value.first, isBlank(first) { value = value.dropFirst() }
            while let last = value.last, isBlank(last) { value = value.dropLast() }
            return (name, String(decoding: value, as: UTF8.self))
        }
    }

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
