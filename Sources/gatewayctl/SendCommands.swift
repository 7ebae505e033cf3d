import ArgumentParser
import GatewayAssembly
import GatewayCore
import GatewayRuntime
import Logging

#if canImport(Glibc)
import Glibc
#endif

struct Send: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send", abstract: "Send a message to one chat through the gateway's paced outbound queue.",
        discussion: """
            Stored in Redis like a request to POST /telegram-gateway/send and delivered by the \
            running pool's workers, within the bot's limits. Waits for the outcome: exit 0 \
            delivered, 1 refused by Telegram (blocked, chat not found), 75 still pending at \
            --timeout.
            """)

    @OptionGroup var common: CommonOptions
    @Option(help: "The chat (a user's id is their private chat's).") var chat: Int64
    @OptionGroup var message: MessageOptions

    func run() throws {
        try OutboundRun(config: try common.load(), message: message).run(chats: [chat])
    }
}

struct Broadcast: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broadcast", abstract: "Send a message to every chat in a file through the gateway's paced outbound queue.",
        discussion: """
            FILE holds one chat id per line (blank lines and # comments are skipped); each id is \
            sent to once. More than 10,000 ids go as several requests. Shows a progress bar while \
            the pool's workers deliver, then the tallies. Exit 0 when every recipient got the \
            message, 1 when some were refused (blocked, chat not found, given up after retries), \
            75 when some were still pending at --timeout (they are still delivered).
            """)

    @OptionGroup var common: CommonOptions
    @Option(name: .customLong("ids-file"), help: "One chat id per line.") var idsFile: String
    @OptionGroup var message: MessageOptions

    func run() throws {
        let config = try common.load()
        guard let contents = readFile(idsFile) else {
            printError("gatewayctl: cannot read \(idsFile)")
            throw ExitCode(66)  // EX_NOINPUT
        }
        var chats: [Int64] = []
        for (number, line) in contents.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let text = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first?.trimmingSpaces ?? ""
            guard !text.isEmpty else { continue }
            guard let chat = Int64(text), chat != 0 else {
                printError("gatewayctl: \(idsFile):\(number + 1): not a chat id")
                throw ExitCode(65)  // EX_DATAERR
            }
            chats.append(chat)
        }
        guard !chats.isEmpty else {
            printError("gatewayctl: \(idsFile) holds no chat ids")
            throw ExitCode(65)
        }
        try OutboundRun(config: config, message: message).run(chats: chats)
    }
}

struct MessageOptions: ParsableArguments {
    @Option(help: "The message (split into parts past 4,096 characters).") var text: String
    @Option(help: "Makes a repeated command send nothing again (within DEDUPE_TTL).") var idempotencyKey: String?
    @Option(help: "Seconds to wait for the outcome (0: only store the request).") var timeout: Double = 3600
}

/// Stores requests through the send API's own code (the same checks, one Redis step each) and
/// follows their status until every recipient is done.
struct OutboundRun {
    let config: GatewayConfig
    let message: MessageOptions

    func run(chats: [Int64]) throws {
        let logger = Logger(label: "gatewayctl") { _ in SwiftLogNoOpLogHandler() }
        let (routes, services) = try loadRoutes(config)
        let gateway = makeGateway(config: config, routes: routes, services: services, logger: logger)
        let dependencies = gateway.makeDependencies()
        guard let store = dependencies.outbound else { throw ExitCode.failure }
        var seen = Set<Int64>()
        let unique = chats.filter { seen.insert($0).inserted }
        var ids: [OutboundJobID] = []
        for (part, start) in stride(from: 0, to: unique.count, by: OutboundRequest.maxRecipients).enumerated() {
            let batch = Array(unique[start..<min(start + OutboundRequest.maxRecipients, unique.count)])
            ids.append(try submit(batch, part: part, api: gateway.outboundAPI, dependencies: dependencies, logger: logger))
        }
        print("stored: \(ids.map(\.description).joined(separator: " ")) (\(unique.count) recipient\(unique.count == 1 ? "" : "s"))")
        guard message.timeout > 0 else { return }
        let deadline = monotonicNanoseconds() + UInt64(message.timeout * 1e9)
        let progress = Progress(total: unique.count)
        var tally = Tally()
        while true {
            tally = Tally()
            for id in ids {
                guard let status = try? store.status(of: id, deadline: .distantFuture) else { continue }
                tally.add(status)
            }
            progress.show(tally)
            if tally.pending == 0 || monotonicNanoseconds() >= deadline { break }
            usleep(500_000)
        }
        progress.finish()
        print("delivered: \(tally.delivered)")
        print(
            "failed: \(tally.failedCount)"
                + (tally.failed.isEmpty
                    ? "" : " (" + tally.failed.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"))
        print("pending: \(tally.pending)")
        if tally.failedCount > 0 { throw ExitCode.failure }
        if tally.pending > 0 { throw ExitCode(75) }  // EX_TEMPFAIL: still being delivered
    }

    private func submit(
        _ chats: [Int64], part: Int, api: OutboundAPI, dependencies: ThreadDependencies, logger: Logger
    ) throws -> OutboundJobID {
        var action = JSONWriter()
        action.field("type", "send_message")
        action.field("text", message.text)
        var body = JSONWriter()
        body.field("chat_ids", json: Array(("[" + chats.map(String.init).joined(separator: ",") + "]").utf8))
        body.field("actions", json: [UInt8(ascii: "[")] + action.finish() + [UInt8(ascii: "]")])
        if let key = message.idempotencyKey { body.field("idempotency_key", part == 0 ? key : "\(key)#\(part)") }
        let head = WebhookHead(method: "POST", secretToken: nil, contentLength: nil, requestID: "gatewayctl", acceptedAt: monotonicNanoseconds())
        let response = api.handle(head, path: OutboundAPI.sendPath, body: body.finish(), with: dependencies, logger: logger)
        let answer = String(decoding: response.body, as: UTF8.self)
        guard response.status == 202, let id = Self.string("id", in: answer).flatMap(OutboundJobID.init) else {
            printError("gatewayctl: not stored (\(response.status)): \(Self.string("error", in: answer) ?? answer)")
            throw ExitCode(response.status == 503 ? 75 : 65)
        }
        if Self.string("duplicate", in: answer) != nil { printError("gatewayctl: \(id) was stored before with this idempotency key; not sent again") }
        return id
    }

    /// A top-level string (or literal) field of the API's small JSON answers.
    static func string(_ name: String, in json: String) -> String? {
        guard let start = json.firstRange(of: "\"\(name)\":") else { return nil }
        var rest = json[start.upperBound...]
        if rest.first == "\"" {
            rest = rest.dropFirst()
            return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
        }
        return String(rest.prefix { $0 != "," && $0 != "}" })
    }
}

struct Tally {
    var delivered = 0
    var pending = 0
    var failed: [String: Int] = [:]
    var failedCount: Int { failed.values.reduce(0, +) }

    mutating func add(_ status: OutboundStatus) {
        delivered += status.delivered
        pending += status.pending
        failed.merge(status.failed, uniquingKeysWith: +)
    }
}

/// A progress bar on a terminal; elsewhere (a log, a pipe) a line every 10 %.
final class Progress {
    private let total: Int
    private let terminal = isatty(STDERR_FILENO) == 1
    private var lastTenth = -1

    init(total: Int) {
        self.total = max(1, total)
    }

    func show(_ tally: Tally) {
        let done = tally.delivered + tally.failedCount
        let line = "\(done)/\(total) done (\(tally.delivered) delivered, \(tally.failedCount) failed)"
        if terminal {
            let width = 30
            let filled = width * done / total
            Self.write("\r[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] " + line)
        } else if done * 10 / total > lastTenth {
            lastTenth = done * 10 / total
            printError(line)
        }
    }

    func finish() {
        if terminal { Self.write("\n") }
    }

    private static func write(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}

extension Substring {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
    }
}
