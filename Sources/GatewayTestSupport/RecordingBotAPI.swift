import GatewayCore
import Synchronization

/// A `BotAPI` that records every call, in order, and can be told to fail.
public final class RecordingBotAPI: BotAPI, Sendable {
    private struct State {
        var calls: [BotCall] = []
        /// When each call was made, on the clock given (0 without one).
        var times: [Int64] = []
        /// Failures for the next calls, in order; then `always`.
        var next: [BotAPIError] = []
        var always: BotAPIError?
        /// Failures for every call to these chats.
        var chats: [Int64: BotAPIError] = [:]
    }

    private let state = Mutex(State())

    private let clock: ManualClock?

    public init(clock: ManualClock? = nil) {
        self.clock = clock
    }

    /// When each call was made (milliseconds of the clock given), in order.
    public var times: [Int64] { state.withLock { $0.times } }

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

    /// Makes every call to `chat` fail with `error` (a 403 for a user who blocked the bot).
    public func refuse(chat: Int64, with error: BotAPIError) {
        state.withLock { $0.chats[chat] = error }
    }

    /// The calls made to `chat`, in order.
    public func calls(to chat: Int64) -> [BotCall] {
        calls.filter { Self.chat(of: $0) == chat }
    }

    public func call(_ call: BotCall, deadline: Deadline) throws(BotAPIError) {
        let chat = Self.chat(of: call)
        let failure = state.withLock { state -> BotAPIError? in
            state.calls.append(call)
            state.times.append(clock?.milliseconds ?? 0)
            if let chat, let refusal = state.chats[chat] { return refusal }
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

extension RecordingBotAPI {
    /// The `chat_id` a call's parameters begin with (as the gateway writes them), if any.
    static func chat(of call: BotCall) -> Int64? {
        let prefix = Array(#"{"chat_id":"#.utf8)
        guard call.parameters.starts(with: prefix) else { return nil }
        let digits = call.parameters.dropFirst(prefix.count).prefix { $0 == UInt8(ascii: "-") || (0x30...0x39).contains($0) }
        return Int64(String(decoding: digits, as: UTF8.self))
    }
}
