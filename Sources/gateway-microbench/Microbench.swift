import Foundation
import GatewayCore
import GatewayRedis
import Logging

/// Plain timing loops over the hot pure functions, printing nanoseconds per operation, for
/// scripts/bench. Each runs for about half a second after a warm-up; figures swing with the
/// machine, so compare them within one run.
///
/// `gateway-microbench --script begin|finish ENV_FILE` prints instead that script's library as
/// the gateway loads it with that configuration (the bench's floor responder,
/// `scripts/bench.d/floor.c`, makes the same calls).
@main
struct Microbench {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        if arguments.first == "--script" {
            let scripts = ["begin": RedisScripts.begin, "finish": RedisScripts.finish]
            guard arguments.count == 3, let script = scripts[arguments[arguments.startIndex + 1]], let path = arguments.last,
                let contents = try? String(contentsOfFile: path, encoding: .utf8),
                let config = try? GatewayConfig.load(environment: DotEnv.parse(contents))
            else {
                FileHandle.standardError.write(Data("usage: gateway-microbench --script begin|finish ENV_FILE (a valid configuration)\n".utf8))
                exit(2)
            }
            return print(script(config.statePolicy).library, terminator: "")
        }
        let update = Array(
            #"{"update_id":123456789,"message":{"message_id":7,"from":{"id":42,"is_bot":false,"first_name":"Ada","username":"ada","language_code":"en"},"chat":{"id":42,"first_name":"Ada","type":"private"},"date":1732540000,"text":"/start ref_abc","entities":[{"offset":0,"length":6,"type":"bot_command"}]}}"#
                .utf8)
        let callback = Array(
            #"{"update_id":123456790,"callback_query":{"id":"4382bfdwdsb323b2d9","from":{"id":42,"is_bot":false,"first_name":"Ada"},"message":{"message_id":11,"chat":{"id":42,"type":"private"},"date":1732540000,"text":"Pick"},"chat_instance":"-1234","data":"CONNECT:99"}}"#
                .utf8)
        let decoder = UpdateDecoder()
        let table = RouteTable.standard
        guard case .success(let decoded) = decoder.decode(update) else { return print("fixture does not decode") }
        let answer = Array(
            #"{"actions":[{"type":"send_message","text":"Welcome!","keyboard":[[{"text":"Go","callback_data":"CONNECT:1"}]]},{"type":"set_state","state":{"flow":"intro","step":1}}]}"#
                .utf8)
        let long = String(repeating: "0123456789 ", count: 1000)

        var sink = 0  // every result is folded in and printed, so the compiler cannot drop the work
        func measure(_ name: String, _ body: () -> Int) { Self.measure(name, into: &sink, body) }
        print("micro-benchmark                          ns/op")
        measure("decode a command message") { (try? decoder.decode(update).get().id).map(Int.init) ?? 0 }
        measure("decode a callback query") { (try? decoder.decode(callback).get().id).map(Int.init) ?? 0 }
        measure("route an update") { table.route(decoded).label.utf8.count }
        measure("parse a command") { BotCommand(text: "/start ref_abc")?.name.utf8.count ?? 0 }
        measure("encode a webhook reply") { BotMethod.sendMessage(chatID: 42, text: "Sorry, I don't know that command.").webhookReplyBody.count }
        measure("parse and validate a service answer") { (try? ServiceAnswer.parse(answer, isCallback: false).get().actions.count) ?? 0 }
        measure("format an answer into Bot API calls") {
            guard case .success(let parsed) = ServiceAnswer.parse(answer, isCallback: false) else { return 0 }
            return ReplyPlan.forAnswer(parsed, to: decoded).methods.count
        }
        measure("encode a service request") { ServiceRequest(requestID: "r", update: decoded, route: table.route(decoded), session: nil).body.count }
        measure("split an 11,000-character text") { TextSplitter.split(long).count }
        let logged = ByteCount()
        let logger = Logger(label: "microbench") { _ in
            LogLineHandler(level: .info, format: .json, clock: { (1_732_540_000, 123_000_000) }) { logged.add($0.count) }
        }
        measure("render an update's log line") {
            var line = UpdateLine(requestID: "5f0c8e2a9b7d4c1e8f3a6b2d9c4e7a1f")
            (line.updateID, line.updateType, line.userID) = (123_456_789, .message, 42)
            (line.route, line.outcome, line.latencyMilliseconds) = ("unknown_command", "replied", 0.412)
            logger.log(level: .info, "update handled", update: line)
            return logged.total
        }
        var clock: Int64 = 0
        measure("take a token from a bucket") {
            clock += 1
            return Int(TokenBucket.take(nil, now: clock, capacity: 1, windowMilliseconds: 1000).0.milliTokens)
        }
        print("(checksum \(sink), so the loops are not optimised away)")
    }

    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    static func measure(_ name: String, into sink: inout Int, _ body: () -> Int) {
        for _ in 0..<1000 { sink &+= body() }
        var iterations = 0
        let start = now()
        while now() - start < 500_000_000 {
            for _ in 0..<100 { sink &+= body() }
            iterations += 100
        }
        let perOperation = Double(now() - start) / Double(iterations)
        print(name + String(repeating: " ", count: max(1, 40 - name.count)) + String(Int(perOperation.rounded())).leftPadded(9))
    }
}

/// The log line benchmark's sink: counts the bytes it is handed (one thread only).
private final class ByteCount: @unchecked Sendable {
    private(set) var total = 0
    func add(_ count: Int) { total &+= count }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
