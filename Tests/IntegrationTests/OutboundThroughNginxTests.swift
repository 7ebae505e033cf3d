import Foundation
import GatewayHTTP
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The services' send API through nginx and the release pool, with a real redis-server and
/// the Bot API stand-in, whose own timestamps judge the pacing.
@Suite(.serialized) struct OutboundThroughNginxTests {
    /// Chat ids far from the ones other tests use: the stand-in's 403 knob names some of them.
    static func recipients(_ count: Int, from first: Int64 = 2_000_001) -> [Int64] {
        (0..<Int64(count)).map { first + $0 }
    }

    static func body(_ chats: [Int64], text: String = "Maintenance tonight at 22:00", key: String? = nil) -> String {
        let ids = chats.map(String.init).joined(separator: ",")
        let idempotency = key.map { #","idempotency_key":"\#($0)""# } ?? ""
        return #"{"chat_ids":[\#(ids)],"actions":[{"type":"send_message","text":"\#(text)"}]\#(idempotency)}"#
    }

    static func json(_ response: HTTPResponse) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]) ?? [:]
    }

    /// Polls the request's status until no recipient is pending; returns the last status.
    @discardableResult
    static func waitUntilDone(_ stack: LocalStack, id: String, timeout: TimeInterval) throws -> [String: Any] {
        var status: [String: Any] = [:]
        try waitUntil("request \(id) is done", timeout: timeout) {
            guard let response = try? stack.send(id: id), response.status == 200 else { return false }
            status = json(response)
            return status["pending"] as? Int == 0
        }
        return status
    }

    /// The chat of each recorded sendMessage (failed attempts included, as `method:status`).
    static func sends(_ stack: LocalStack) -> [(chat: Int64, method: String, at: Double)] {
        zip(stack.botAPICalls(), stack.botAPICallTimes()).compactMap { call, at in
            guard call.method.hasPrefix("sendMessage"), let chat = call.params["chat_id"] as? Int else { return nil }
            return (Int64(chat), call.method, at)
        }
    }

    private func run(
        processes: Int = 2, environment: [String: String] = [:], _ body: (LocalStack, RedisServer) throws -> Void
    ) throws {
        try withStack(processes: processes, threads: 4, redis: (password: nil, useSocket: true), standins: true, environment: environment) {
            stack, redis in try body(stack, try #require(redis))
        }
    }

    @Test func aThousandRecipientBroadcastIsPacedPoolWideAndSentOnceEach() throws {
        try run { stack, _ in
            let chats = Self.recipients(1000)
            let blocked = Array(chats.filter { $0 % 97 == 0 })
            try stack.control(["bot_api_403_chats": blocked])
            let started = monotonicNow()
            let response = try stack.send(Self.body(chats))
            #expect(response.status == 202)
            let accepted = Self.json(response)
            #expect(accepted["recipients"] as? Int == 1000)
            let id = try #require(accepted["id"] as? String)
            let status = try Self.waitUntilDone(stack, id: id, timeout: 90)
            let seconds = monotonicNow() - started

            let sends = Self.sends(stack)
            let perChat = Dictionary(grouping: sends, by: \.chat).mapValues(\.count)
            #expect(Set(perChat.keys) == Set(chats), "every recipient was tried")
            let repeats = perChat.values.filter { $0 > 1 }.count
            #expect(repeats == 0, "\(repeats) recipients got the message more than once")
            // Blocked users: one attempt each, recorded, never retried.
            #expect(sends.filter { blocked.contains($0.chat) }.allSatisfy { $0.method == "sendMessage:403" })
            #expect(status["delivered"] as? Int == 1000 - blocked.count)
            #expect((status["failed"] as? [String: Any])?["blocked"] as? Int == blocked.count)
            let busiestCalls = busiestWindow(sends.map(\.at), seconds: 1)
            let busiest = busiestCalls.count
            // On failure, the gaps show which send came late (the budget spaces them 35 ms apart).
            let gaps = zip(busiestCalls, busiestCalls.dropFirst()).map { Int(($1 - $0) * 1000) }
            #expect(busiest <= 30, "\(busiest) sends in one second, ms apart: \(gaps)")
            // 1,000 at 30 per 1.05 s is 34 s; 5 s for the rest.
            #expect(seconds < 1000.0 / 30 * 1.05 + 5, "took \(seconds) s")
            sleep(2)
            #expect(Self.sends(stack).count == sends.count, "nothing is sent after the request is done")
            let late = try stack.metric("telegram_gateway_outbox_late_sends_total") ?? 0
            print(
                "broadcast: \(chats.count) recipients (\(blocked.count) blocked) in \(String(format: "%.1f", seconds)) s, "
                    + "busiest second \(busiest) sends, repeats \(repeats), sends given a new slot for a late wake-up \(Int(late))")
        }
    }

    @Test func aRetryAfterStopsEveryProcessesSendsForItsSeconds() throws {
        try run { stack, _ in
            let chats = Self.recipients(150, from: 2_100_001)
            let id = try #require(Self.json(try stack.send(Self.body(chats)))["id"] as? String)
            try waitUntil("the broadcast is under way", timeout: 30) { Self.sends(stack).count >= 40 }
            // The backlog, read from Redis when scraped: recipients not yet done, the request's age.
            #expect(try stack.metric("telegram_gateway_outbound_backlog_recipients").map { $0 > 0 && $0 <= 110 } == true)
            #expect(try stack.metric("telegram_gateway_outbound_oldest_age_seconds").map { $0 > 0.5 && $0 < 30 } == true)
            try stack.control(["bot_api_429": 1])
            try Self.waitUntilDone(stack, id: id, timeout: 60)
            #expect(try stack.metric("telegram_gateway_outbound_backlog_recipients") == 0)
            // Each process writes its counters a few times a second.
            try waitUntil("the delivered counter reaches 150", timeout: 5) {
                (try? stack.metric("telegram_gateway_outbound_delivered_total")) == 150
            }
            let sends = Self.sends(stack)
            let refused = try #require(sends.first { $0.method == "sendMessage:429" })
            // Calls already on their way when Telegram answered may land just after; then
            // nothing until retry_after (1 s) has passed, from either process.
            let during = sends.filter {
                ($0.at - refused.at) > 0.05 && ($0.at - refused.at) < 1.0
            }
            #expect(during.isEmpty, "\(during.count) sends during the pause")
            let next = try #require(sends.first { ($0.at - refused.at) > 0.05 })
            #expect(Set(sends.filter { $0.method == "sendMessage" }.map(\.chat)) == Set(chats), "the refused call is sent again later")
            let inFlight = sends.filter { $0.at > refused.at && ($0.at - refused.at) <= 0.05 }.count
            print(
                "429 mid-broadcast: \(inFlight) calls already on their way landed; the next send came "
                    + String(format: "%.3f", next.at - refused.at) + " s after the 429")
        }
    }

    @Test func aResponderKilledMidBroadcastLosesNothing() throws {
        // Four worker threads per process for two partitions each: two stand by to take over a
        // dead process's partitions once their leases (2 s) lapse.
        try run(environment: ["QUEUE_LEASE": "2", "QUEUE_WORKERS": "4", "QUEUE_PARTITIONS": "4"]) { stack, _ in
            let chats = Self.recipients(300, from: 2_200_001)
            let id = try #require(Self.json(try stack.send(Self.body(chats)))["id"] as? String)
            try waitUntil("the broadcast is under way", timeout: 30) { Self.sends(stack).count >= 60 }
            let victim = try #require(stack.poolPIDs.first)
            kill(victim, SIGKILL)
            let status = try Self.waitUntilDone(stack, id: id, timeout: 90)
            let perChat = Dictionary(grouping: Self.sends(stack), by: \.chat).mapValues(\.count)
            #expect(Set(perChat.keys) == Set(chats), "nothing lost")
            #expect(status["delivered"] as? Int == chats.count)
            // At-least-once: only a call on its way when the process died goes again, at most
            // one per worker thread of the killed process.
            let repeats = perChat.values.reduce(0) { $0 + $1 - 1 }
            #expect(repeats <= 4, "\(repeats) repeats")
            print("killed mid-broadcast: \(chats.count) recipients, \(repeats) repeats")
        }
    }

    @Test func theSameIdempotencyKeySendsOnceAndTokensAreChecked() throws {
        let previous = "previous-service-token-\(UInt32.random(in: 0...UInt32.max))"
        try run(environment: ["SERVICE_API_TOKEN_PREVIOUS": previous]) { stack, _ in
            let body = Self.body([2_300_001, 2_300_002], key: "reminder-42")
            let first = Self.json(try stack.send(body))
            let second = try stack.send(body, token: previous)  // during a rotation: either token
            #expect(second.status == 202)
            #expect(Self.json(second)["id"] as? String == first["id"] as? String)
            #expect(Self.json(second)["duplicate"] as? Bool == true)
            try Self.waitUntilDone(stack, id: try #require(first["id"] as? String), timeout: 30)
            sleep(1)
            #expect(Self.sends(stack).count == 2)

            let missing = try stack.send(body, token: nil)
            #expect(missing.status == 401)
            #expect(missing.headers.contains { $0.name.lowercased() == "www-authenticate" })
            #expect(try stack.send(body, token: "wrong-token-0123456789").status == 401)
            #expect(try stack.send(id: first["id"] as? String ?? "", token: "wrong-token-0123456789").status == 401)
            #expect(stack.gatewayLog.contains("missing or wrong token"))
            #expect(!stack.gatewayLog.contains(LocalStack.serviceToken) && !stack.gatewayLog.contains(previous))
            #expect(!stack.nginxLogs.contains(LocalStack.serviceToken))
        }
    }

    @Test func oddBodiesAreRefusedAndStoreNothing() throws {
        try run { stack, redis in
            let tooMany = Self.body(Self.recipients(10_001))
            let cases: [(body: String, status: Int, reason: String)] = [
                ("not json", 400, "the body is not JSON"),
                (tooMany, 400, "at most 10000"),
                (#"{"chat_ids":[1],"actions":[{"type":"delete_everything"}]}"#, 400, "is not sent outbound"),
                (Self.body([1], text: String(repeating: "a", count: 1 << 20)), 413, ""),
            ]
            for (body, status, reason) in cases {
                let response = try stack.send(body)
                #expect(response.status == status, "\(body.prefix(60))")
                if !reason.isEmpty { #expect((Self.json(response)["error"] as? String)?.contains(reason) == true) }
            }
            #expect(try redis.cli("--scan", "--pattern", "*job*").isEmpty, "no job stored")
            let streams = try redis.cli("--scan", "--pattern", "{tgq:*}:stream").split(separator: "\n").map(String.init)
            #expect(!streams.isEmpty, "the workers made their streams")
            for stream in streams { #expect(try redis.cli("XLEN", stream) == "0", "\(stream) holds an entry") }
            // The webhook location does not serve the API, and the API is not the webhook.
            #expect(try stack.post(Self.body([1])).status == 200)
            #expect(Self.sends(stack).isEmpty)
        }
    }

    @Test func aServiceAnswerForAnotherChatReachesThatUser() throws {
        try run { stack, _ in
            let press = DownstreamThroughNginxTests.callback(1, user: 5001, data: "ACCEPT:5002")
            let response = try stack.post(press)
            #expect(response.status == 200)
            try waitUntil("the other user is told", timeout: 15) { Self.sends(stack).contains { $0.chat == 5002 } }
            let told = try #require(stack.botAPICalls().first { ($0.params["chat_id"] as? Int) == 5002 })
            #expect((told.params["text"] as? String)?.contains("accepted your match") == true)
            let own = stack.botAPICalls().filter { ($0.params["chat_id"] as? Int) == 5001 }
            #expect(!own.contains { ($0.params["text"] as? String)?.contains("accepted your match") == true })
        }
    }
}
