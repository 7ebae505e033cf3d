import Foundation
import GatewayCore
import GatewayHTTP
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The whole path: nginx, the release pool, real Redis, the service and Bot API stand-ins.
@Suite(.serialized) struct DownstreamThroughNginxTests {
    static func text(_ id: Int, user: Int64 = 5001, _ text: String) -> String {
        RedisStateThroughNginxTests.command(id, user: user, text: text)
    }

    static func callback(_ id: Int, user: Int64 = 5001, data: String) -> String {
        #"{"update_id":\#(id),"callback_query":{"id":"cbq-\#(id)","from":{"id":\#(user),"is_bot":false,"first_name":"Ada"},"message":{"message_id":77,"chat":{"id":\#(user),"type":"private"},"date":1732540000,"text":"Pick"},"chat_instance":"1","data":"\#(data)"}}"#
    }

    static func reply(_ response: HTTPResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
    }

    private func run(processes: Int = 2, environment: [String: String] = [:], _ body: (LocalStack) throws -> Void) throws {
        try run(processes: processes, environment: environment) { stack, _ in try body(stack) }
    }

    private func run(processes: Int = 2, environment: [String: String] = [:], _ body: (LocalStack, RedisServer) throws -> Void) throws {
        var environment = environment
        if environment["RATE_LIMIT_REQUESTS"] == nil { environment["RATE_LIMIT_REQUESTS"] = "100" }
        try withStack(processes: processes, redis: (password: nil, useSocket: true), standins: true, environment: environment) { stack, redis in
            try body(stack, try #require(redis))
            for forbidden in [LocalStack.token] {
                #expect(!(stack.gatewayLog + stack.nginxLogs).contains(forbidden), "a log holds the bot token")
            }
        }
    }

    @Test func eachRouteReachesItsServiceAndTheUserGetsTheAnswer() throws {
        try run { stack in
            let start = try Self.reply(try stack.post(Self.text(1, "/start")))
            #expect(start["method"] as? String == "sendMessage")
            #expect((start["text"] as? String)?.hasPrefix("Welcome, Ada!") == true)
            #expect(start["reply_markup"] != nil)

            let chat = try Self.reply(try stack.post(Self.text(2, "hello")))
            #expect(chat["text"] as? String == "You said: hello (message 1 of this conversation)")

            let connect = try Self.reply(try stack.post(Self.callback(3, data: "CONNECT:abc")))
            #expect(connect["method"] as? String == "editMessageText")
            #expect(connect["message_id"] as? Int == 77)

            let requests = stack.serviceRequests()
            #expect(requests.map(\.service) == ["user_profile", "conversation", "matching"])
            #expect((requests[0].request["command"] as? [String: Any])?["name"] as? String == "start")
            #expect(requests[1].request["text"] as? String == "hello")
            #expect((requests[2].request["callback"] as? [String: Any])?["data"] as? String == "CONNECT:abc")
            #expect(requests.allSatisfy { ($0.request["internal_user_id"] as? String)?.count == 36 })
            #expect(stack.botAPICalls().map(\.method) == ["answerCallbackQuery"], "the callback was answered through the API first")
        }
    }

    @Test func threeActionsArriveInOrder() throws {
        try run { stack in
            let last = try Self.reply(try stack.post(Self.text(1, "three actions")))
            #expect(stack.botAPICalls().map { $0.params["text"] as? String } == ["one", "two"])
            #expect(last["text"] as? String == "three")
        }
    }

    @Test func aTenThousandCharacterAnswerArrivesAsThreeMessagesThatJoinBack() throws {
        try run { stack in
            let last = try Self.reply(try stack.post(Self.text(1, "long 10000")))
            let parts = stack.botAPICalls().compactMap { $0.params["text"] as? String } + [last["text"] as? String ?? ""]
            #expect(parts.count == 3)
            let pattern = Array("0123456789abcdefghijklmnopqrstuvwxyz\n")
            #expect(parts.joined() == String((0..<10_000).map { pattern[$0 % pattern.count] }))
            #expect(parts.allSatisfy { $0.utf16.count <= 4096 })
        }
    }

    @Test func aSlowServiceGetsTheApologyWithinItsTimeout() throws {
        try run(environment: ["MATCHING_TIMEOUT": "1"]) { stack in
            try stack.control(["service": "matching", "delay_ms": 4000])
            let started = monotonicNow()
            let response = try stack.post(Self.callback(1, data: "CONNECT:x"))
            let elapsed = monotonicNow() - started
            #expect(elapsed >= 1 && elapsed < 2, "\(elapsed)")
            let reply = try Self.reply(response)
            #expect(reply["method"] as? String == "answerCallbackQuery")
            #expect(reply["text"] as? String == ReplyTexts.standard.serviceFailure)
        }
    }

    @Test func aRefusedServiceIsRetriedOnceThenTheUserGetsTheApology() throws {
        let closed = try LocalStack.freePort()
        try run(environment: ["CONVERSATION_SERVICE_URL": "http://127.0.0.1:\(closed)"]) { stack in
            let reply = try Self.reply(try stack.post(Self.text(1, "hello")))
            #expect(reply["text"] as? String == ReplyTexts.standard.serviceFailure)
            #expect(stack.gatewayLog.contains(#""error":"refused""#))
        }
    }

    @Test func theCircuitOpensAfterRepeatedFailuresAndOtherRoutesAreUnaffected() throws {
        // One process, so one breaker sees every failure.
        try run(processes: 1) { stack in
            try stack.control(["service": "matching", "status": 500])
            for id in 1...8 { _ = try stack.post(Self.callback(id, data: "SKIP:\(id)")) }
            let reached = stack.serviceRequests().filter { $0.service == "matching" }.count
            // Five failures open the circuit; the three presses after it never reach the service.
            #expect(reached == 5, "\(reached) calls reached the service")
            #expect(stack.gatewayLog.contains(#""error":"circuit_open""#))
            let chat = try Self.reply(try stack.post(Self.text(20, "hello")))
            #expect(chat["text"] as? String == "You said: hello (message 1 of this conversation)")
        }
    }

    @Test func theCircuitClosesOnceTheServiceRecovers() throws {
        try run(processes: 1, environment: ["CIRCUIT_OPEN_SECONDS": "1"]) { stack in
            try stack.control(["service": "matching", "status": 500])
            for id in 1...6 { _ = try stack.post(Self.callback(id, data: "SKIP:\(id)")) }
            #expect(stack.gatewayLog.contains(#""error":"circuit_open""#))
            try stack.control(["reset": true])
            usleep(1_100_000)
            let probe = try Self.reply(try stack.post(Self.callback(7, data: "SKIP:7")))
            #expect(probe["method"] as? String == "editMessageText", "the probe went through and closed the circuit")
            let next = try Self.reply(try stack.post(Self.callback(8, data: "SKIP:8")))
            #expect(next["method"] as? String == "editMessageText")
        }
    }

    @Test func aButtonWith200BytesOfCallbackDataRoundTripsUnchanged() throws {
        try run { stack in
            let message = try Self.reply(try stack.post(Self.text(1, "long button")))
            let keyboard = try #require((message["reply_markup"] as? [String: Any])?["inline_keyboard"] as? [[[String: Any]]])
            let data = try #require(keyboard.first?.first?["callback_data"] as? String)
            #expect(data.hasPrefix("~") && data.utf8.count <= 64)
            // Pressed later, on whichever responder nginx picks.
            _ = try stack.post(Self.callback(2, data: data))
            let press = try #require(stack.serviceRequests().last)
            #expect(press.service == "matching")
            let original = "CONNECT:" + String(repeating: "0123456789abcdef", count: 12)
            #expect((press.request["callback"] as? [String: Any])?["data"] as? String == original)
        }
    }

    @Test func fiftyUpdatesToOneGroupWithinASecondStayWithinTheGroupLimitAcrossTheProcesses() throws {
        try run(processes: 2, environment: ["RATE_LIMIT_REQUESTS": "100"]) { stack, redis in
            let group: Int64 = -1_001_234_567
            let bodies = (1...50).map { id in
                #"{"update_id":\#(id),"message":{"message_id":\#(id),"from":{"id":\#(7000 + id),"is_bot":false,"first_name":"U"},"chat":{"id":\#(group),"type":"supergroup","title":"G"},"date":1732540000,"text":"/nope"}}"#
            }
            let started = monotonicNow()
            let responses = RedisStateThroughNginxTests.postTogether(bodies, to: stack)
            #expect((monotonicNow() - started) < 10)
            #expect(responses.allSatisfy { $0?.status == 200 })
            let sent =
                responses.compactMap { $0 }.filter { !$0.body.isEmpty }.count
                + stack.botAPICalls().filter { ($0.params["chat_id"] as? Int).map(Int64.init) == group }.count
            #expect(sent == 20, "Telegram allows 20 messages a minute to a group: \(sent) were sent")
            // None is dropped: the other 30 wait in their users' outboxes for the group's window.
            let kept = try (1...50).reduce(0) { $0 + (Int(try redis.cli("LLEN", "{tg:\(7000 + $1)}:outbox")) ?? 0) }
            #expect(kept == 30, "\(kept) replies wait for a worker")
        }
    }

    @Test func aRoutesFileAddsACommand() throws {
        let routes = FileManager.default.temporaryDirectory.appending(path: "routes-\(UUID().uuidString).conf")
        try "command orders notification\ncallback BUY matching\n".write(to: routes, atomically: false, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: routes) }
        try run(environment: ["ROUTES_FILE": routes.path]) { stack in
            let orders = try Self.reply(try stack.post(Self.text(1, "/orders")))
            #expect(orders["text"] as? String == "Noted.")
            let buy = try Self.reply(try stack.post(Self.callback(2, data: "BUY:42")))
            #expect(buy["method"] as? String == "editMessageText")
            #expect(stack.serviceRequests().map(\.service) == ["notification", "matching"])
        }
    }

    @Test func botAPI429PausesSendingForItsRetryAfterAndAWorkerDeliversEverythingInOrderAfterIt() throws {
        try run { stack in
            try stack.control(["bot_api_429": 1])
            let started = monotonicNow()
            let response = try stack.post(Self.text(1, "three actions"))
            #expect((monotonicNow() - started) < 1, "the webhook request did not wait out the 429")
            #expect(response.status == 200)
            #expect(response.body.isEmpty, "the rest waits behind the refused message: no webhook reply")
            try waitUntil("a worker delivers the answer") { stack.botAPICalls().filter { $0.method == "sendMessage" }.count == 3 }
            #expect(stack.botAPICalls().map(\.method) == ["sendMessage:429", "sendMessage", "sendMessage", "sendMessage"])
            #expect(stack.botAPICalls().compactMap { $0.params["text"] as? String } == ["one", "one", "two", "three"])
            let times = stack.botAPICallTimes()
            #expect((times[1] - times[0]) >= 0.95, "nothing was sent during the retry_after of 1 s")
        }
    }

    @Test func botAPI500IsRetriedOnceAndTwoInARowHandTheRestToAWorkerInOrder() throws {
        try run { stack in
            try stack.control(["bot_api_500": 1])
            _ = try Self.reply(try stack.post(Self.text(1, "three actions")))
            #expect(stack.botAPICalls().map(\.method) == ["sendMessage:500", "sendMessage", "sendMessage"])
            try stack.control(["bot_api_500": 2])
            let response = try stack.post(Self.text(2, user: 5043, "three actions"))
            #expect(response.body.isEmpty)
            // "one" failed twice: nothing is left out, a worker sends all three, in order.
            try waitUntil("a worker delivers the rest") { stack.botAPICalls().filter { $0.method == "sendMessage" }.count == 5 }
            #expect(
                stack.botAPICalls().map(\.method).suffix(5) == ["sendMessage:500", "sendMessage:500", "sendMessage", "sendMessage", "sendMessage"])
            #expect(stack.botAPICalls().compactMap { $0.params["text"] as? String }.suffix(5) == ["one", "one", "one", "two", "three"])
            #expect(stack.gatewayLog.contains("Bot API call failed"))
        }
    }

    @Test func aButtonPressIsAnsweredEvenWhenItsServiceFails() throws {
        try run { stack in
            try stack.control(["service": "matching", "status": 503])
            let reply = try Self.reply(try stack.post(Self.callback(1, data: "ACCEPT:1")))
            #expect(reply["method"] as? String == "answerCallbackQuery")
            #expect(reply["callback_query_id"] as? String == "cbq-1")
        }
    }

    @Test func twoUpdatesOfOneUserAtOnceAreProcessedOneAfterTheOther() throws {
        try run { stack, redis in
            try stack.control(["service": "conversation", "delay_ms": 300])
            let responses = RedisStateThroughNginxTests.postTogether([Self.text(1, "first"), Self.text(2, "second")], to: stack)
            #expect(responses.allSatisfy { $0?.status == 200 })
            // One was answered in the webhook reply, the other handed to the user's stream.
            let replies = responses.compactMap { $0 }.filter { !$0.body.isEmpty }
            #expect(replies.count == 1)
            try waitUntil("a worker answers the other") { stack.botAPICalls().contains { $0.method == "sendMessage" } }
            let texts =
                try replies.map { try Self.reply($0)["text"] as? String ?? "" } + stack.botAPICalls().compactMap { $0.params["text"] as? String }
            // Each saw the state the other wrote, in one order or the other; never both "message 1".
            #expect(Set(texts.map { $0.contains("message 1 ") }) == [true, false], "\(texts)")
            // The worker's answer reaches the Bot API before the worker takes it out of the
            // user's outbox; until then a new update of the user goes behind it, answered by a
            // worker too, not in the webhook reply.
            try waitUntil("the worker is done with the user") { (try? redis.cli("SCARD", "{tg:5001}:queued")) == "0" }
            try stack.control(["reset": true])
            let third = try Self.reply(try stack.post(Self.text(3, "third")))
            #expect(third["text"] as? String == "You said: third (message 3 of this conversation)")
        }
    }
}

/// A responder killed in the middle of an update, for real: its claim holds the redelivery off
/// (503) until the lease expires, then the redelivery is processed, once.
@Suite(.serialized) struct KilledResponderTests {
    @Test func anUpdateWhoseResponderWasKilledIsProcessedAfterItsLeaseExpires() throws {
        // Every update's deadline is 1 s, so the lease is 6 s.
        let timeouts = ["CONVERSATION_TIMEOUT", "USER_PROFILE_TIMEOUT", "MATCHING_TIMEOUT", "NOTIFICATION_TIMEOUT"]
        let environment = Dictionary(uniqueKeysWithValues: timeouts.map { ($0, "0.5") } + [("UPDATE_DEADLINE", "1")])
        try withStack(mode: .supervisor, processes: 1, threads: 2, redis: (password: nil, useSocket: true), standins: true, environment: environment)
        { stack, _ in
            let supervisor = try #require(stack.poolPIDs.first)
            try waitUntil("a child runs") { LocalStack.children(of: supervisor).count == 1 }
            let child = try #require(LocalStack.children(of: supervisor).first)
            try stack.control(["service": "conversation", "delay_ms": 3000])
            let update = DownstreamThroughNginxTests.text(1, user: 6001, "hello")

            let first = Mutex<Int?>(nil)
            let url = stack.url
            let certificate = stack.directory.appending(path: "tls/cert.pem").path
            let poster = Thread {
                let client = try? HTTPClient(caFile: certificate)
                let request = HTTPRequest(
                    method: "POST", url: url, headers: [("X-Telegram-Bot-Api-Secret-Token", LocalStack.secret)],
                    body: Array(update.utf8), timeoutSeconds: 30)
                let status = (try? client?.send(request))??.status ?? -1
                first.withLock { $0 = status }
            }
            poster.start()
            try waitUntil("the service is called") { stack.serviceRequests().count == 1 }
            kill(child, SIGKILL)
            try waitUntil("nginx answered the first delivery") { first.withLock { $0 } != nil }
            #expect(first.withLock { $0 } == 502, "Telegram sees an error and will redeliver")

            try stack.control(["reset": true])
            try waitUntil("the supervisor replaced the child") { LocalStack.children(of: supervisor).count == 1 }
            let early = try stack.post(update)
            #expect(early.status == 503, "the dead responder's lease still holds")
            usleep(6_500_000)
            let redelivery = try stack.post(update)
            #expect(redelivery.status == 200)
            let reply = try DownstreamThroughNginxTests.reply(redelivery)
            #expect((reply["text"] as? String)?.hasPrefix("You said: hello") == true)
            #expect(try stack.post(update).body.isEmpty, "processed once: a further redelivery is a duplicate")
            #expect(stack.serviceRequests().count == 2, "the killed attempt and the one after the lease")
        }
    }
}
