import Foundation
import GatewayCore
import GatewayHTTP
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// An update's life as a user lives it, through nginx, the release pool (2 processes × 8
/// threads, as shipped), real Redis and the stand-ins: nobody waits for somebody else's busy
/// user, no answer loses its tail to pacing, a hostile service costs a bounded amount, and a
/// stalled Redis is a bounded delay, not a hang.
@Suite(.serialized) struct LifecycleThroughNginxTests {
    private static func groupText(_ id: Int, user: Int64, group: Int64, _ text: String) -> String {
        #"{"update_id":\#(id),"message":{"message_id":\#(id),"from":{"id":\#(user),"is_bot":false,"first_name":"U"},"chat":{"id":\#(group),"type":"supergroup","title":"G"},"date":1732540000,"text":"\#(text)"}}"#
    }

    private func sentTexts(_ stack: LocalStack, to chat: Int64? = nil) -> [String] {
        stack.botAPICalls().filter { $0.method == "sendMessage" && (chat == nil || ($0.params["chat_id"] as? Int).map(Int64.init) == chat) }
            .compactMap { $0.params["text"] as? String }
    }

    @Test func oneUserInSixteenGroupsWithASlowServiceHoldsUpNobodyElse() throws {
        try withStack(processes: 2, threads: 8, redis: (nil, true), standins: true, environment: ["RATE_LIMIT_REQUESTS": "100"]) { stack, _ in
            try stack.control(["service": "conversation", "delay_ms": 3000])
            let busy: Int64 = 4242
            let groups = (1...16).map { -1_000_000_000 - Int64($0) }
            let theirs = groups.enumerated().map { Self.groupText(100 + $0.offset, user: busy, group: $0.element, "hi \($0.offset)") }
            let others = (1...20).map { RedisStateThroughNginxTests.command(200 + $0, user: 9000 + Int64($0)) }
            // The busy user's 16 updates arrive together (one per chat, as Telegram delivers
            // them); the other users' while those are being worked.
            let theirResponses = Mutex<[HTTPResponse?]>([])
            let url = stack.url
            let certificate = stack.directory.appending(path: "tls/cert.pem").path
            let poster = Thread {
                let responses = RedisStateThroughNginxTests.postTogether(theirs, url: url, certificate: certificate)
                theirResponses.withLock { $0 = responses }
            }
            poster.start()
            try waitUntil("the busy user's first update reaches the service") { !stack.serviceRequests().isEmpty }
            let timed = Mutex<[(status: Int, seconds: Double)]>([])
            let group = DispatchGroup()
            for body in others {
                group.enter()
                Thread {
                    defer { group.leave() }
                    guard let client = try? HTTPClient(caFile: certificate) else { return }
                    let started = monotonicNow()
                    let response = try? client.send(
                        HTTPRequest(
                            method: "POST", url: url, headers: [("X-Telegram-Bot-Api-Secret-Token", LocalStack.secret)],
                            body: Array(body.utf8), timeoutSeconds: 30))
                    timed.withLock { $0.append((response?.status ?? 0, monotonicNow() - started)) }
                }.start()
            }
            group.wait()
            try waitUntil("the busy user's requests are answered", timeout: 40) { theirResponses.withLock { $0.count == 16 } }
            let answered = timed.withLock { $0 }
            let slowest = answered.map(\.seconds).max() ?? 99
            print("one user in 16 groups, a 3 s service: 20 other users answered in at most \(String(format: "%.3f", slowest)) s")
            #expect(answered.count == 20 && answered.allSatisfy { $0.status == 200 })
            #expect(slowest < 1.5, "another user waited \(slowest) s")
            let responses = theirResponses.withLock { $0 }
            #expect(responses.allSatisfy { $0?.status == 200 }, "none of the busy user's updates got 503: \(responses.map { $0?.status ?? 0 })")
            // One was processed while Telegram waited (its answer is the webhook reply); the
            // other 15 were handed to the user's stream.
            let replies = responses.compactMap { $0 }.filter { !$0.body.isEmpty }
            #expect(replies.count == 1)

            // Nothing of the busy user is lost: every update reaches the service, one at a time,
            // and every group gets its answer.
            try stack.control(["reset": true])
            try waitUntil("every update of the busy user is processed and answered", timeout: 60) {
                groups.filter { !sentTexts(stack, to: $0).isEmpty }.count == 15
            }
            let calls = stack.serviceRequests().filter { ($0.request["user"] as? [String: Any])?["id"] as? Int == Int(busy) }
            #expect(calls.count == 16, "each update called the service once")
            let texts =
                try replies.map { try DownstreamThroughNginxTests.reply($0)["text"] as? String ?? "" } + groups.flatMap { sentTexts(stack, to: $0) }
            let counts = texts.compactMap { $0.split(separator: "message ").last.flatMap { Int($0.prefix { $0.isNumber }) } }
            #expect(counts.sorted() == Array(1...16), "one at a time, each seeing the state the one before wrote: \(counts.sorted())")
        }
    }

    @Test func aTwentyThousandCharacterAnswerAndASixMessageAnswerArriveWholeInOrderWithTheKeyboardLast() throws {
        try withStack(processes: 2, threads: 4, redis: (nil, true), standins: true, environment: ["RATE_LIMIT_REQUESTS": "100"]) { stack, _ in
            for (id, user, text, parts) in [(1, Int64(31), "long 20000", 5), (2, Int64(32), "six actions", 6)] {
                let started = monotonicNow()
                let response = try stack.post(textUpdate(id: id, user: Int(user), text: text))
                #expect(response.status == 200)
                #expect((monotonicNow() - started) < 1, "the webhook request did not wait for the chat's window")
                let arrived = (try? waitUntil("all \(parts) parts arrive", timeout: 20) { sentTexts(stack, to: user).count == parts }) != nil
                let texts = sentTexts(stack, to: user)
                print("\(text): \(texts.count) of \(parts) parts, \(texts.joined().count) characters, arrived")
                try #require(arrived, "only \(texts.count) of \(parts) parts arrived")
                let calls = stack.botAPICalls().filter { ($0.params["chat_id"] as? Int).map(Int64.init) == user }
                #expect(calls.count == parts)
                #expect(calls.dropLast().allSatisfy { $0.params["reply_markup"] == nil })
                #expect(calls.last?.params["reply_markup"] != nil, "the keyboard comes with the last part")
                let times = stack.botAPICallTimes()
                let window = zip(stack.botAPICalls(), times).filter { ($0.0.params["chat_id"] as? Int).map(Int64.init) == user }.map(\.1)
                // Three per 3 s in a private chat: the fourth no earlier than 3 s after the first.
                #expect((window[3] - window[0]) >= 2.9, "paced")
            }
            let pattern = Array("0123456789abcdefghijklmnopqrstuvwxyz\n")
            #expect(sentTexts(stack, to: 31).joined() == String((0..<20_000).map { pattern[$0 % pattern.count] }), "every character, in order")
            #expect(sentTexts(stack, to: 32) == (1...6).map { "part \($0) of 6" })
            #expect(!stack.gatewayLog.contains("not sent"), "nothing was left out")
        }
    }

    @Test func aHostileServiceCostsABoundedAmountOfMemoryAndTheUserGetsTheApology() throws {
        try withStack(processes: 1, threads: 4, redis: (nil, true), standins: true, environment: ["RATE_LIMIT_REQUESTS": "100"]) { stack, _ in
            let pid = try #require(stack.poolPIDs.first)
            _ = try stack.post(textUpdate(id: 1, user: 40, text: "warm up"))
            let before = try #require(Self.peakResidentKiB(pid))
            for (id, kind) in ["huge", "deep", "deeper", "grapheme"].enumerated() {
                try stack.control(["service": "conversation", "hostile": kind])
                let response = try stack.post(textUpdate(id: 10 + id, user: 41 + id, text: "hello"))
                #expect(response.status == 200, "\(kind)")
                let reply = try DownstreamThroughNginxTests.reply(response)
                #expect(reply["text"] as? String == ReplyTexts.standard.serviceFailure, "\(kind): the user gets the apology")
            }
            #expect(!ChildProcess.isGone(pid), "the responder survived every answer")
            let after = try #require(Self.peakResidentKiB(pid))
            print("hostile answers: the responder's peak resident memory went from \(before / 1024) MiB to \(after / 1024) MiB")
            #expect(after - before < 32 * 1024, "a 50 MiB answer is not read: peak grew by \((after - before) / 1024) MiB")
            #expect(stack.gatewayLog.contains(#""error":"answer_too_large""#))
        }
    }

    @Test func aStalledRedisIsABoundedDelayNotAHang() throws {
        try withStack(processes: 2, threads: 4, redis: (nil, false), standins: true, environment: ["RATE_LIMIT_REQUESTS": "100"]) { stack, redis in
            let redis = try #require(redis)
            for (stall, command) in [("CLIENT PAUSE", ["CLIENT", "PAUSE", "2500", "ALL"]), ("DEBUG SLEEP", ["DEBUG", "SLEEP", "2.5"])] {
                let socket = redis.socketPath
                let stalled = Mutex<String?>(nil)
                let cli = Thread {
                    let output = (try? ChildProcess.run("/usr/bin/redis-cli", ["-s", socket] + command)) ?? "failed"
                    stalled.withLock { $0 = output }
                }
                cli.start()
                usleep(200_000)
                if stall == "DEBUG SLEEP" { #expect(stalled.withLock { $0 } == nil, "DEBUG SLEEP holds Redis") }
                var slowest = 0.0
                for id in 1...6 {
                    let started = monotonicNow()
                    let response = try stack.post(RedisStateThroughNginxTests.command(id + (stall == "DEBUG SLEEP" ? 100 : 0), user: 700 + Int64(id)))
                    slowest = max(slowest, monotonicNow() - started)
                    #expect(response.status == 200, "\(stall)")
                    #expect(RedisStateThroughNginxTests.isUnknownCommandReply(response.body), "\(stall): answered without Redis")
                }
                print("\(stall) for 2.5 s: the slowest of 6 updates was answered in \(String(format: "%.3f", slowest)) s")
                #expect(slowest < 1, "\(stall): a request waited \(slowest) s on a stalled Redis")
                try waitUntil("Redis answers again", timeout: 10) { (try? redis.cli("PING")) == "PONG" && stalled.withLock { $0 } != nil }
                #expect(stalled.withLock { $0 }?.contains("OK") == true, "\(stall) ran")
                // Past the longest reconnect backoff, so the next stall meets live connections.
                usleep(2_200_000)
                for id in 1...8 { _ = try stack.post(RedisStateThroughNginxTests.command(300 + id, user: 750 + Int64(id))) }
            }
            usleep(2_200_000)  // the longest reconnect backoff
            let again = try stack.post(RedisStateThroughNginxTests.command(500, user: 799))
            #expect(RedisStateThroughNginxTests.isUnknownCommandReply(again.body))
            #expect(try stack.post(RedisStateThroughNginxTests.command(500, user: 799)).body.isEmpty, "dedupe works again")
        }
    }

    @Test func syncModeResponderRaisesItsOpenFileLimit() throws {
        try withStack(processes: 1, threads: 2) { stack in
            let pid = try #require(stack.poolPIDs.first)
            let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
            let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
            let numbers = line.split(separator: " ").compactMap { Int($0) }
            #expect(numbers.count == 2 && numbers[0] == numbers[1], "soft limit raised to the hard one: \(line)")
        }
    }

    /// The process's peak resident memory (`VmHWM`), in KiB.
    static func peakResidentKiB(_ pid: pid_t) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return nil }
        return line.split(separator: " ").compactMap { Int($0) }.first
    }
}
