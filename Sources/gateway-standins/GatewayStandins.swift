import ArgumentParser
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Loopback stand-ins for the four internal services and the Telegram Bot API, for local runs
/// and tests. They answer in the service contract's shape, record what they receive (one JSON
/// object per line under --record), print each Bot API call Telegram would have received, and
/// can be made slow, failing or 429-answering through `POST /_control` on the Bot API port.
@main
struct GatewayStandins: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway-standins",
        abstract: "Stand-ins for the internal services and the Bot API (never for production).")

    @Option(help: "Port of the conversation service; user_profile, matching and notification take the next three.")
    var servicesPort: UInt16 = 8101

    @Option(help: "Port of the Bot API stand-in.")
    var botAPIPort: UInt16 = 8180

    @Option(help: "Folder for services.jsonl and bot-api.jsonl.")
    var record: String?

    @Flag(help: "Print nothing per call.")
    var quiet = false

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let recorder = try Recorder(folder: record, quiet: quiet)
        let behaviour = Behaviour()
        let services = ["conversation", "user_profile", "matching", "notification"]
        var servers: [StandinServer] = []
        for (offset, name) in services.enumerated() {
            servers.append(
                try StandinServer(port: servicesPort + UInt16(offset)) { request in
                    ServiceStandin.answer(service: name, request: request, behaviour: behaviour, recorder: recorder)
                })
        }
        servers.append(
            try StandinServer(port: botAPIPort) { request in
                if request.path == "/_control" {
                    return behaviour.apply(request.body) ? .json("{}") : .json(#"{"error":"not a control object"}"#, status: 400)
                }
                return BotAPIStandin.answer(request: request, behaviour: behaviour, recorder: recorder)
            })
        for server in servers { server.start() }
        Recorder.say("stand-ins: services on 127.0.0.1:\(servicesPort)-\(servicesPort + 3), Bot API on 127.0.0.1:\(botAPIPort)")
        while true { sleep(3600) }
    }
}

/// How the stand-ins misbehave, set by tests.
final class Behaviour: Sendable {
    private struct State {
        var delays: [String: Int] = [:]
        var statuses: [String: Int] = [:]
        /// A service answering something hostile instead: `huge`, `deep` or `grapheme`.
        var hostile: [String: String] = [:]
        var botAPI429s = 0
        var botAPI500s = 0
        /// Chats whose every call is answered 403, as for a user who blocked the bot.
        var blocked: Set<Int64> = []
        /// The parameters of the last setWebhook, as sent.
        var webhook: Data?
        var webhookReport = WebhookReport()
        /// Every Bot API call answered 401, as for a wrong or revoked token.
        var unauthorized = false
    }

    /// What getWebhookInfo reports besides the webhook's own parameters.
    struct WebhookReport {
        var pending = 3
        var error: String? = "Wrong response from the webhook: 403 Forbidden"
        var errorAge = 300
    }

    private let state = Mutex(State())

    var webhook: Data? { state.withLock { $0.webhook } }
    var webhookReport: WebhookReport { state.withLock { $0.webhookReport } }
    var isUnauthorized: Bool { state.withLock { $0.unauthorized } }
    var refusesSomeChat: Bool { state.withLock { !$0.blocked.isEmpty } }

    func setWebhook(_ parameters: Data?) { state.withLock { $0.webhook = parameters } }

    /// `{"service":"matching","delay_ms":2000,"status":500,"hostile":"huge"}`,
    /// `{"bot_api_429":1,"bot_api_500":1,"bot_api_403_chats":[42]}`, `{"unauthorized":true}` or
    /// `{"webhook_pending":0,"webhook_error":null,"webhook_error_age":60}`; `{"reset":true}`
    /// undoes everything. False when the body is not a JSON object.
    func apply(_ data: Data) -> Bool {
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return data.isEmpty }
        state.withLock { state in
            if json["reset"] as? Bool == true {
                (state.delays, state.statuses, state.hostile, state.botAPI429s, state.botAPI500s) = ([:], [:], [:], 0, 0)
                state.blocked = []
                state.webhookReport = WebhookReport()
                state.unauthorized = false
            }
            if let unauthorized = json["unauthorized"] as? Bool { state.unauthorized = unauthorized }
            if let pending = json["webhook_pending"] as? Int { state.webhookReport.pending = pending }
            if json.keys.contains("webhook_error") { state.webhookReport.error = json["webhook_error"] as? String }
            if let age = json["webhook_error_age"] as? Int { state.webhookReport.errorAge = age }
            if let chats = json["bot_api_403_chats"] as? [Int] { state.blocked = Set(chats.map(Int64.init)) }
            if let service = json["service"] as? String {
                if let delay = json["delay_ms"] as? Int { state.delays[service] = delay }
                if let status = json["status"] as? Int { state.statuses[service] = status }
                if let hostile = json["hostile"] as? String { state.hostile[service] = hostile }
            }
            if let count = json["bot_api_429"] as? Int { state.botAPI429s = count }
            if let count = json["bot_api_500"] as? Int { state.botAPI500s = count }
        }
        return true
    }

    func misbehaviour(for service: String) -> (delay: Int, status: Int?, hostile: String?) {
        state.withLock { ($0.delays[service] ?? 0, $0.statuses[service], $0.hostile[service]) }
    }

    /// The status the next Bot API call (to `chat`) gets, if it should fail.
    func nextBotAPIFailure(chat: Int64?) -> Int? {
        state.withLock { state in
            if let chat, state.blocked.contains(chat) { return 403 }
            if state.botAPI429s > 0 {
                state.botAPI429s -= 1
                return 429
            }
            if state.botAPI500s > 0 {
                state.botAPI500s -= 1
                return 500
            }
            return nil
        }
    }
}

/// Appends one JSON object per line to the record files. `at` is when the request arrived, in
/// seconds on the monotonic clock: the tests measure pacing and pauses with it, and the wall
/// clock can step under them.
final class Recorder: Sendable {
    private let services: FileHandle?
    private let botAPI: FileHandle?
    private let lock = NSLock()
    private let quiet: Bool

    init(folder: String?, quiet: Bool) throws {
        self.quiet = quiet
        guard let folder else {
            (services, botAPI) = (nil, nil)
            return
        }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        func open(_ name: String) -> FileHandle? {
            // Not FileManager.createFile: on Linux it writes through a TemporaryDirectory.* it leaves behind.
            let fd = Glibc.open(folder + "/" + name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            return fd < 0 ? nil : FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        }
        services = open("services.jsonl")
        botAPI = open("bot-api.jsonl")
    }

    func service(_ name: String, body: Data) {
        if services != nil { write(#"{"service":"\#(name)","at":\#(Self.now()),"request":"#, body, to: services) }
        if !quiet { Self.say("service \(name): \(String(decoding: body, as: UTF8.self))") }
    }

    private static func now() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    func botAPI(_ method: String, body: Data) {
        if botAPI != nil { write(#"{"method":"\#(method)","at":\#(Self.now()),"params":"#, body, to: botAPI) }
        if !quiet { Self.say("bot-api \(method): \(String(decoding: body, as: UTF8.self))") }
    }

    /// One unbuffered line on standard output, so a log file shows each call as it happens.
    static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    private func write(_ prefix: String, _ body: Data, to handle: FileHandle?) {
        guard let handle else { return }
        let json = (try? JSONSerialization.jsonObject(with: body)) != nil ? body : Data("null".utf8)
        lock.lock()
        defer { lock.unlock() }
        handle.seekToEndOfFile()
        handle.write(Data(prefix.utf8) + json + Data("}\n".utf8))
    }
}
