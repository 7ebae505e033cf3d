import GatewayCore
import GatewayFastCGI
import GatewayTestSupport
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer targets for the code that reads what others send: Telegram's updates, command
/// text, callback data, FastCGI parameters, the services' answers and their send requests, and
/// the splitting of the texts they send. Built by `scripts/fuzz`
/// with `-sanitize=fuzzer` (libFuzzer then owns `main`); `FUZZ_TARGET` picks the target.
/// Built normally, `gateway-fuzz TARGET FILE...` runs files through a target once (the
/// corpus as a regression test).
enum FuzzTarget: String, CaseIterable {
    case decoder, command, callback, fastcgi
    case decoderDiff = "decoder-diff"
    case serviceAnswer = "service-answer"
    case outbound, split

    private static let clock = ManualClock()
    private static let processor = UpdateProcessor(
        settings: .init(secrets: [Secret("fuzz-secret")], maxBodyBytes: 65_536), clock: clock.gatewayClock, newInternalUserID: { "id" })
    private static let logger = Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() }

    private static func summary(_ result: Result<Update, UpdateDecodingError>) -> String {
        switch result {
        case .success(let update): "\(update)"
        case .failure(let error): error.shortDescription
        }
    }

    func run(_ bytes: [UInt8]) {
        switch self {
        case .decoder:
            // Decoding, then everything the pipeline derives from an update.
            guard case .success(let update) = UpdateDecoder().decode(bytes) else { return }
            let route = RouteTable.standard.route(update, botUsername: "fuzz_bot")
            _ = StateSubject(update)
            _ = ServiceRequest(requestID: "r", update: update, route: route, session: nil).body
        case .decoderDiff:
            // The byte decoder against Foundation's JSONDecoder it replaced: the same update or
            // the same error class, where the two compare (otherwise the input is only decoded).
            let decoded = UpdateDecoder().decode(bytes)
            let reference = ReferenceUpdateDecoder().decode(bytes)
            guard ReferenceUpdateDecoder.compares(bytes) else { return }
            switch (decoded, reference) {
            case (.success(let update), .success(let expected)) where update == expected: return
            case (.failure(let error), .failure(let expected)) where error == expected: return
            default: fatalError("the decoders disagree: \(Self.summary(decoded)) against JSONDecoder's \(Self.summary(reference))")
            }
        case .command:
            // The first byte sets how many entities the text claims (offsets from the next two).
            let text = String(decoding: bytes.dropFirst(3), as: UTF8.self)
            let entities = bytes.count >= 3 ? [MessageEntity(type: "bot_command", offset: Int(bytes[1]) - 8, length: Int(bytes[2]))] : []
            let claimed = bytes.first.map { $0 % 2 == 0 } == true ? entities : []
            let command = BotCommand(text: text, entities: claimed)
            // The byte parser against the scalar parser it replaced: the same command, or none.
            let reference = ReferenceBotCommand.parse(text, entities: claimed)
            guard command == reference else {
                fatalError("the command parsers disagree: \(String(describing: command)) against \(String(describing: reference))")
            }
            _ = command?.isAddressed(to: "fuzz_bot")
        case .callback:
            // A button press carrying the bytes as its data, through the whole worker pipeline:
            // token resolution, routing by prefix, the generic CONFIRM/CANCEL handler, the reply.
            let data = String(decoding: bytes, as: UTF8.self)
            var query = JSONWriter()
            query.field("id", "q")
            query.field("from", json: Array(#"{"id":1,"is_bot":false,"first_name":"F"}"#.utf8))
            query.field("message", json: Array(#"{"message_id":3,"chat":{"id":1,"type":"private"},"date":0,"text":"t"}"#.utf8))
            query.field("chat_instance", "1")
            query.field("data", data)
            var update = JSONWriter()
            update.field("update_id", 1)
            update.field("callback_query", json: query.finish())
            // A fresh store per input, so no input is a duplicate of an earlier one.
            let state = InMemoryStateStore(policy: .testing, clock: Self.clock)
            let dependencies = ThreadDependencies(
                state: state, services: ScriptedServiceClient(answering: "{}"), botAPI: RecordingBotAPI(), outgoing: state,
                queue: RecordingUpdateQueue())
            let context = UpdateContext(
                requestID: "r", logger: Self.logger, deadline: .after(seconds: 25, from: Self.clock.now), mayWait: true,
                clock: Self.clock.gatewayClock)
            _ = Self.processor.process(
                stored: update.finish(), callbackAnswered: false, replay: nil, attempt: 1, isLastAttempt: true, with: dependencies,
                context: context)
            _ = RouteTable.prefix(ofCallbackData: data)
        case .fastcgi:
            // NUL-separated name, value, name, value…
            let fields = bytes.split(separator: 0, omittingEmptySubsequences: false).map(Array.init)
            var parameters: [String: [UInt8]] = [:]
            for index in stride(from: 0, to: fields.count - 1, by: 2) {
                parameters[String(decoding: fields[index], as: UTF8.self)] = fields[index + 1]
            }
            let (_, head) = FastCGIParameters.head(acceptedAt: 0) { parameters[$0.description] }
            _ = Self.processor.admit(head, logger: Self.logger)
        case .serviceAnswer:
            // The byte reader against Foundation's JSONDecoder it replaced (the same answer or
            // the same error, where the two compare), then the replies made of what it read.
            guard let isCallback = bytes.first.map({ $0 % 2 == 1 }) else { return }
            let body = Array(bytes.dropFirst())
            let parsed = ServiceAnswer.parse(body, isCallback: isCallback)
            if ReferenceServiceAnswerDecoder.compares(body) {
                let reference = ReferenceServiceAnswerDecoder.parse(body, isCallback: isCallback)
                guard parsed == reference else { fatalError("the readers disagree: \(parsed) against JSONDecoder's \(reference)") }
            }
            guard case .success(let answer) = parsed else { return }
            let update = Update(
                id: 1, type: .message, content: .message(Message(messageID: 1, from: nil, chat: Chat(id: 5, type: "private"), text: "t")))
            for method in ReplyPlan.forAnswer(answer, to: update).methods { _ = method.webhookReplyBody }
        case .split:
            // A text (the bytes after the first, decoded as UTF-8) split at a limit the first byte
            // sets (255: Telegram's): the same parts as the grapheme walk the splitter replaced.
            guard let first = bytes.first else { return }
            let text = String(decoding: bytes.dropFirst(), as: UTF8.self)
            let limit = first == 255 ? TextSplitter.maxUTF16Units : 2 + Int(first % 64)
            let parts = TextSplitter.split(text, limit: limit)
            let reference = ReferenceTextSplitter.split(text, limit: limit)
            guard parts == reference else {
                let scalars = { (parts: [String]) in parts.map { $0.unicodeScalars.map(\.value) } }
                fatalError("the splitters disagree at \(limit): \(scalars(parts)) against \(scalars(reference))")
            }
        case .outbound:
            // A send request through the API (parse, recipients, templates, the store) and the
            // fan-out of what it stored.
            let state = InMemoryStateStore(policy: .testing, clock: Self.clock)
            let streams = InMemoryStreams(settings: QueueSettings(partitions: 2, workers: 2), clock: Self.clock)
            let outbound = InMemoryOutbound(store: state, streams: streams)
            let dependencies = ThreadDependencies(
                state: state, services: ScriptedServiceClient(answering: "{}"), botAPI: RecordingBotAPI(), outgoing: state, queue: streams,
                outbound: outbound)
            let api = OutboundAPI(
                tokens: [Secret("fuzz-token-0123456789")], maxBacklog: 100_000, retryAfterSeconds: 5, partitions: 2, sessionTTLSeconds: 60,
                deadlineSeconds: 25, clock: Self.clock.gatewayClock)
            let head = WebhookHead(
                method: "POST", secretToken: nil, contentLength: bytes.count, requestID: "r", acceptedAt: Self.clock.now,
                authorization: Array("Bearer fuzz-token-0123456789".utf8))
            guard api.admit(head, path: OutboundAPI.sendPath, logger: Self.logger) == nil,
                api.handle(head, path: OutboundAPI.sendPath, body: bytes, with: dependencies, logger: Self.logger).status == 202
            else { return }
            let context = UpdateContext(
                requestID: "r", logger: Self.logger, deadline: .after(seconds: 25, from: Self.clock.now), mayWait: true,
                clock: Self.clock.gatewayClock)
            for partition in 0..<2 {
                for entry in streams.entries(partition) {
                    if case .job(let id) = entry.content { _ = Self.processor.fanOut(id, dependencies: dependencies, context: context) }
                }
            }
        }
    }
}

#if FUZZING
/// libFuzzer's driver, run from this executable's own entry point (SwiftPM names an executable
/// module's `main` after the module, so libFuzzer's `main` would never be linked).
// swift-format-ignore: AlwaysUseLowerCamelCase
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@_cdecl("gateway_fuzz_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guard Selected.target != nil else {
        print("set FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
        return 64
    }
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzOneInput(data, size) }
}

/// The input callback; exported under libFuzzer's name too, which its own `main` refers to.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    Selected.target?.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

enum Selected {
    static let target = getenv("FUZZ_TARGET").flatMap { FuzzTarget(rawValue: String(cString: $0)) }
}
#else
@main
enum ReplayCorpus {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
            print("usage: gateway-fuzz TARGET FILE...   (targets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")))")
            exit(64)
        }
        var count = 0
        for path in arguments.dropFirst() {
            guard let file = fopen(path, "rb") else { continue }
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while case let read = fread(&buffer, 1, buffer.count, file), read > 0 { bytes += buffer[..<read] }
            fclose(file)
            target.run(bytes)
            count += 1
        }
        print("\(name): \(count) inputs, none crashed")
    }
}
#endif
