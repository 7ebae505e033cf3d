import Foundation
import GatewayCore
import GatewayHTTP
import GatewayRedis
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Rate limit, sessions, dedupe and the per-user lease through nginx and the release pool,
/// with a real redis-server over TCP, a unix socket, and with a password.
@Suite(.serialized) struct RedisStateThroughNginxTests {
    static func command(_ id: Int, user: Int64, text: String = "/definitely_unknown") -> String {
        #"{"update_id":\#(id),"message":{"message_id":\#(id),"from":{"id":\#(user),"is_bot":false,"first_name":"Ada"},"chat":{"id":\#(user),"type":"private"},"date":1732540000,"text":"\#(text)"}}"#
    }

    static let unknownReply = BotMethod.sendMessage(chatID: 0, text: ReplyTexts.standard.unknownCommand)
    static func isUnknownCommandReply(_ body: [UInt8]) -> Bool {
        String(decoding: body, as: UTF8.self).contains(ReplyTexts.standard.unknownCommand)
    }
    static func isFriendlyWarning(_ body: [UInt8]) -> Bool {
        String(decoding: body, as: UTF8.self).contains("slow down")
    }

    /// Posts all bodies at once, one connection each.
    static func postTogether(_ bodies: [String], to stack: LocalStack) -> [HTTPResponse?] {
        postTogether(bodies, url: stack.url, certificate: stack.directory.appending(path: "tls/cert.pem").path)
    }

    static func postTogether(_ bodies: [String], url: String, certificate: String) -> [HTTPResponse?] {
        // A thread each (not concurrentPerform, which runs about one per core), so they are
        // really in flight together, as Telegram's connections are.
        let results = Mutex<[Int: HTTPResponse]>([:])
        let group = DispatchGroup()
        for (index, body) in bodies.enumerated() {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                guard let client = try? HTTPClient(caFile: certificate) else { return }
                let request = HTTPRequest(
                    method: "POST", url: url, headers: [("X-Telegram-Bot-Api-Secret-Token", LocalStack.secret)], body: Array(body.utf8),
                    timeoutSeconds: 30)
                if let response = try? client.send(request) { results.withLock { $0[index] = response } }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        return results.withLock { results in bodies.indices.map { results[$0] } }
    }

    @Test func fiveUpdatesOfOneUserAtOnceGetOneRoutedAndOneFriendlyMessage() throws {
        try withStack(threads: 4, redis: (password: nil, useSocket: false)) { stack, _ in
            let responses = Self.postTogether((1...5).map { Self.command($0, user: 777) }, to: stack)
            #expect(responses.allSatisfy { $0?.status == 200 })
            let bodies = responses.compactMap { $0?.body }
            #expect(bodies.filter(Self.isUnknownCommandReply).count == 1)
            #expect(bodies.filter(Self.isFriendlyWarning).count == 1)
            #expect(bodies.filter(\.isEmpty).count == 3)
            // Another user is not affected.
            let other = try stack.post(Self.command(6, user: 778))
            #expect(Self.isUnknownCommandReply(other.body))
        }
    }

    @Test func sessionKeyHasItsTTLAndEveryUpdateRefreshesIt() throws {
        try withStack(redis: (password: nil, useSocket: true), environment: ["RATE_LIMIT_REQUESTS": "100"]) { stack, redis in
            let redis = try #require(redis)
            let session = StateSubjectKeys(subject: .user(900), updateID: 0).session
            #expect(try stack.post(Self.command(1, user: 900, text: "hello there")).status == 200)
            #expect(try redis.cli("HGET", session, "id").count == 36, "a UUID internal id")
            #expect((Int(try redis.cli("TTL", session)) ?? 0) > 86_000)
            try redis.cli("EXPIRE", session, "100")
            #expect(try stack.post(Self.command(2, user: 900)).status == 200)
            #expect((Int(try redis.cli("TTL", session)) ?? 0) > 86_000)
        }
    }

    @Test func theSameUpdatePostedTwiceIsProcessedOnce() throws {
        try withStack(redis: (password: "redis-pass-\(UInt16.random(in: 0...UInt16.max))", useSocket: false)) { stack, _ in
            let first = try stack.post(Self.command(41, user: 901))
            let second = try stack.post(Self.command(41, user: 901))
            #expect(Self.isUnknownCommandReply(first.body))
            #expect(second.status == 200)
            #expect(second.body.isEmpty)
            #expect(stack.gatewayLog.contains(#""outcome":"duplicate""#))
            #expect(!stack.gatewayLog.contains(#""degraded""#), "Redis with a password must be used, not bypassed")
        }
    }

    @Test func aBusyUsersSecondUpdateIsAnsweredAtOnceAndProcessedAfterTheFirst() throws {
        try withStack(redis: (password: nil, useSocket: false), standins: true) { stack, redis in
            let fixture = StoreFixture(try #require(redis))
            let store = fixture.store(lease: 30_000)
            // Another responder is processing update 1 of user 902 (a text, so it holds the user).
            guard case .proceed(let first?, _, _, _) = try fixture.begin(store, user: 902, update: 1, token: "s-first") else {
                Issue.record("not claimed")
                return
            }
            let started = monotonicNow()
            let response = try stack.post(textUpdate(id: 2, user: 902, text: "second"))
            #expect(response.status == 200)
            #expect(response.body.isEmpty, "no webhook reply: a worker answers it")
            #expect((monotonicNow() - started) < 0.5, "the request did not wait for the first update")
            usleep(500_000)
            #expect(stack.serviceRequests().isEmpty, "it waits behind the first")
            _ = try store.finish(Completion(claim: first, stateChange: .set(#"{"messages":1}"#)), deadline: .distantFuture)
            try waitUntil("a worker processes it") { stack.botAPICalls().contains { $0.method == "sendMessage" } }
            #expect(stack.botAPICalls().compactMap { $0.params["text"] as? String } == ["You said: second (message 2 of this conversation)"])
        }
    }

    @Test func aLeaseLeftByADeadResponderDefersTheRedeliveryUntilItExpires() throws {
        try withStack(redis: (password: nil, useSocket: false)) { stack, redis in
            let redis = try #require(redis)
            let fixture = StoreFixture(redis)
            // A responder claimed update 5 of user 903 and was killed before finishing.
            #expect(try fixture.begin(fixture.store(), user: 903, update: 5, token: "s-dead").isClaim)
            let redelivery = try stack.post(Self.command(5, user: 903))
            #expect(redelivery.status == 503)
            #expect(Int(redelivery.header("retry-after") ?? "") ?? 0 >= 1)
            let keys = StateSubjectKeys(subject: .user(903), updateID: 5)
            try redis.cli("PEXPIRE", keys.update, "1")
            try redis.cli("PEXPIRE", keys.lease, "1")
            try waitUntil("the dead responder's leases expire") { (try? redis.cli("EXISTS", keys.update, keys.lease)) == "0" }
            let later = try stack.post(Self.command(5, user: 903))
            #expect(later.status == 200)
            #expect(Self.isUnknownCommandReply(later.body))
        }
    }

    @Test func redisKilledUnderLoadStillAnswers200AndRecoversWhenItReturns() throws {
        try withStack(processes: 2, threads: 4, redis: (password: nil, useSocket: false)) { stack, redis in
            let redis = try #require(redis)
            let loadtest = try stack.startLoadtest(seconds: 4)
            usleep(1_000_000)
            redis.kill()
            let summary = try stack.finishLoadtest(loadtest)
            #expect(summary.contains("loadtest:"), "\(summary)")
            #expect(summary.contains(" non2xx=0 "), "\(summary)")
            #expect(summary.contains(" socket_errors=0 "), "\(summary)")
            let warnings = stack.gatewayLog.components(separatedBy: "dependency failing").count - 1
            #expect((1...4).contains(warnings), "warnings are rate-limited per process: \(warnings)")

            // Back again: state works without restarting the pool.
            try redis.start()
            usleep(2_200_000)  // longer than the longest reconnect backoff
            let afterRestart = try stack.post(Self.command(70, user: 904))
            #expect(Self.isUnknownCommandReply(afterRestart.body))
            #expect(try stack.post(Self.command(70, user: 904)).body.isEmpty, "dedupe works again")
            try redis.cli("FUNCTION", "FLUSH")
            let afterFlush = try stack.post(Self.command(71, user: 905))
            #expect(Self.isUnknownCommandReply(afterFlush.body))
            #expect(try stack.post(Self.command(71, user: 905)).body.isEmpty, "the scripts' libraries loaded again after FUNCTION FLUSH")
            #expect(stack.gatewayLog.contains("dependency recovered"))
        }
    }
}
