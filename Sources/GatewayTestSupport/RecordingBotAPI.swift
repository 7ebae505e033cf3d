import GatewayCore
import Synchronization

/// A `BotAPI` that records every call, in order, and can be told to fail.
public final class RecordingBotAPI: BotAPI, Sendable {
    private struct State {
        var calls: [BotCall] = []
        /// Failures for the next calls, in order; then `always`.
        var next: [BotAPIError] = []
        var always: BotAPIError?
    }

    private let state = Mutex(State())

    public init() {}

    /// Every call made, failed ones included, in order.
    public var calls: [BotCall] { state.withLock { $0.calls } }

    /// Makes every following call fail with `error` (nil: succeed again).
    public func fail(with error: BotAPIError?) {
        state.withLock { $0.always = error }
    }

    /// Makes the next calls fail with these errors, one each, in order.
    public func failNext(_ errors: [BotAPIError]) {
        state.withLock { $0.next = errors }
    }

    public func call(_ call: BotCall, deadline: Deadline) throws(BotAPIError) {
        let failure = state.withLock { state -> BotAPIError? in
            state.calls.append(call)
            return state.next.isEmpty ? state.always : state.next.removeFirst()
        }
        if let failure { throw failure }
    }
}

/// A `ServiceClient` that answers from a closure and records each request body.
public final class ScriptedServiceClient: ServiceClient, Sendable {
    public typealias Script = @Sendable (ServiceName, [UInt8]) -> Result<[UInt8], ServiceCallError>

    private let script: Script
    private let recorded = Mutex<[(service: ServiceName, body: [UInt8], deadline: Deadline)]>([])

    public init(_ script: @escaping Script) {
        self.script = script
    }

    /// Answers every call with `json`.
    public convenience init(answering json: String) {
        self.init { _, _ in .success(Array(json.utf8)) }
    }

    public var requests: [(service: ServiceName, body: [UInt8])] { recorded.withLock { $0.map { ($0.service, $0.body) } } }

    /// The deadline each call was given.
    public var deadlines: [Deadline] { recorded.withLock { $0.map(\.deadline) } }

    public func call(_ service: ServiceName, body: [UInt8], deadline: Deadline) throws(ServiceCallError) -> [UInt8] {
        recorded.withLock { $0.append((service, body, deadline)) }
        return try script(service, body).get()
    }
}
