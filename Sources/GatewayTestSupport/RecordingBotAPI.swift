import GatewayCore
import Synchronization

/// A `BotAPI` that records every call, in order, and can be told to fail.
public final class RecordingBotAPI: BotAPI, Sendable {
    private let recorded = Mutex<[BotMethod]>([])
    private let failure = Mutex<BotAPIError?>(nil)

    public init() {}

    public var calls: [BotMethod] { recorded.withLock { $0 } }

    public func fail(with error: BotAPIError?) {
        failure.withLock { $0 = error }
    }

    public func call(_ method: BotMethod) throws(BotAPIError) {
        recorded.withLock { $0.append(method) }
        if let error = failure.withLock({ $0 }) { throw error }
    }
}

/// A `ServiceClient` that answers from a closure and records each request body.
public final class ScriptedServiceClient: ServiceClient, Sendable {
    public typealias Script = @Sendable (ServiceName, [UInt8]) -> Result<[UInt8], ServiceCallError>

    private let script: Script
    private let recorded = Mutex<[(service: ServiceName, body: [UInt8])]>([])

    public init(_ script: @escaping Script) {
        self.script = script
    }

    /// Answers every call with `json`.
    public convenience init(answering json: String) {
        self.init { _, _ in .success(Array(json.utf8)) }
    }

    public var requests: [(service: ServiceName, body: [UInt8])] { recorded.withLock { $0 } }

    public func call(_ service: ServiceName, body: [UInt8]) throws(ServiceCallError) -> [UInt8] {
        recorded.withLock { $0.append((service, body)) }
        return try script(service, body).get()
    }
}
