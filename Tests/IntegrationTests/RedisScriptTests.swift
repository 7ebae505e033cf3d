import Foundation
import GatewayCore
import GatewayRuntime
import GatewayTestSupport
import Logging
import Testing

@testable import GatewayRedis

/// The Lua scripts themselves, run through the gateway's own Redis adapters against a real
/// redis-server. Time-dependent cases set the data relative to Redis's own clock instead of
/// sleeping.
@Suite(.serialized) struct RedisScriptTests {
    private func withRedis(_ body: (StoreFixture) throws -> Void) throws {
        let redis = try RedisServer()
        defer { try? redis.stop() }
        try body(StoreFixture(redis))
    }

    @Test(arguments: TokenBucketVector.all)
    func luaBucketMatchesTheSharedVectors(vector: TokenBucketVector) throws {
        try withRedis { fixture in
            let rate = StateSubjectKeys(subject: .user(7), updateID: 1).pace
            if let start = vector.start {
                // Set the bucket (kept a minute) relative to Redis's own clock, in Redis.
                let setup = """
                    local t = redis.call('TIME')
                    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
                    local warned = 0
                    if ARGV[3] ~= '' then warned = now - tonumber(ARGV[3]) end
                    local value = struct.pack('<ddddd', tonumber(ARGV[1]), now - tonumber(ARGV[2]), now + 60000, warned, 0)
                    redis.call('SET', KEYS[1], value, 'PX', 60000)
                    return 1
                    """
                try fixture.redis.cli(
                    "EVAL", setup, "1", rate, "\(start.milliTokens)", "\(start.updatedAgo)", start.warnedAgo.map(String.init) ?? "")
            }
            let store = fixture.store(capacity: vector.capacity, window: vector.windowMilliseconds)
            let decision = try store.begin(
                BeginRequest(updateID: 1, subject: .user(7), needsSession: false, newInternalUserID: "", token: "s1"), deadline: .distantFuture)
            if vector.allowed {
                #expect(decision == .proceed(nil, nil, reply: .none, outboxWaiting: 0))
            } else {
                #expect(decision == .limited(warn: vector.warn))
            }
            // Redis's clock moves on between setting up and running: allow 100 ms of refill.
            let pace = try pacingRecord(rate, in: fixture.redis)
            let left = try #require(pace.first, "\(pace)")
            let slack = 100 * Int64(vector.capacity) * 1000 / vector.windowMilliseconds
            #expect(left >= vector.milliTokensAfter && left <= vector.milliTokensAfter + slack, "\(left)")
        }
    }

    /// The policy's numbers are the begin and finish scripts' constants: responders with
    /// different settings (a rolling change of them) run different scripts on one Redis, each
    /// with its own numbers, its session's lifetime and its mark's included.
    @Test func storesWithDifferentPoliciesShareOneRedisEachWithItsOwnNumbers() throws {
        try withRedis { fixture in
            func policy(capacity: Int, session: Int, dedupe: Int) -> StatePolicy {
                StatePolicy(
                    rateLimitRequests: capacity, rateLimitWindowMilliseconds: 60_000, sessionTTLSeconds: session, dedupeTTLSeconds: dedupe,
                    leaseMilliseconds: 10_000)
            }
            let strict = fixture.store(policy: policy(capacity: 1, session: 1000, dedupe: 500))
            let lenient = fixture.store(policy: policy(capacity: 3, session: 2000, dedupe: 700))
            let done = BeginDecision.proceed(nil, nil, reply: .none, outboxWaiting: 0)
            #expect(try fixture.begin(strict, user: 1, update: 1, token: "s-1", needs: false) == done)
            #expect(try fixture.begin(lenient, user: 2, update: 2, token: "s-2", needs: false) == done)
            #expect(try fixture.begin(strict, user: 1, update: 3, token: "s-3", needs: false) == .limited(warn: true))
            #expect(try fixture.begin(lenient, user: 2, update: 4, token: "s-4", needs: false) == done)
            #expect(try fixture.begin(lenient, user: 2, update: 5, token: "s-5", needs: false) == done)
            #expect(try fixture.begin(lenient, user: 2, update: 6, token: "s-6", needs: false) == .limited(warn: true))
            // A session each, with its store's lifetime; the finished update's mark with its store's.
            for (store, user, update, session, dedupe) in [(strict, Int64(3), Int64(7), 1000, 500), (lenient, 4, 8, 2000, 700)] {
                guard case .proceed(let claim?, _, _, _) = try fixture.begin(store, user: user, update: update, token: "s-\(update)") else {
                    Issue.record("no claim for user \(user)")
                    continue
                }
                _ = try store.finish(Completion(claim: claim, stateChange: .set(#"{"step":1}"#)), deadline: .distantFuture)
                let keys = StateSubjectKeys(subject: .user(user), updateID: update)
                let sessionTTL = try #require(Int(try fixture.redis.cli("TTL", keys.session)))
                let markTTL = try #require(Int(try fixture.redis.cli("TTL", keys.update)))
                #expect((session - 5...session).contains(sessionTTL), "session of user \(user): \(sessionTTL) s")
                #expect((dedupe - 5...dedupe).contains(markTTL), "mark of update \(update): \(markTTL) s")
            }
        }
    }

    @Test func queueModesFrontDoorLimitsAUserWithItsOwnBucketAndWarnsOnce() throws {
        try withRedis { fixture in
            let settings = QueueSettings(partitions: 1)
            let queue = RedisUpdateQueue(store: fixture.store(capacity: 1, window: 60_000), settings: settings)
            func enqueue(_ update: Int64) throws -> EnqueueDecision {
                try queue.enqueue(
                    EnqueueRequest(updateID: update, subject: .user(7), body: Array(#"{"update_id":\#(update)}"#.utf8), isCallback: false),
                    deadline: .distantFuture)
            }
            #expect(try enqueue(1) == .queued(answerCallbackNow: false))
            #expect(try enqueue(2) == .limited(warn: true))
            #expect(try enqueue(3) == .limited(warn: false), "warned once a window")
            #expect(try enqueue(1) == .duplicate)
            // The bucket's record: no token left (a minute's refill is under one), warned.
            let bucket = try pacingRecord(QueueKeys(partition: 0).rate(.user(7)), in: fixture.redis)
            #expect(bucket.count == 3 && bucket[0] < 1000 && bucket[2] > 0, "MILLI_TOKENS AT WARNED: \(bucket)")
            let ttl = try #require(Int(try fixture.redis.cli("PTTL", QueueKeys(partition: 0).rate(.user(7)))))
            #expect((119_000...120_000).contains(ttl), "two rate windows: \(ttl)")
        }
    }

    @Test func aBusyUsersUpdateIsHandedOverAndLaterOnesQueueBehindItUntilAWorkerFinishesIt() throws {
        try withRedis { fixture in
            let store = fixture.store()
            guard case .proceed(let first?, let session, _, _) = try fixture.begin(store, user: 5, update: 1, token: "s-a") else {
                Issue.record("the first update is not claimed")
                return
            }
            #expect(session == Session(internalUserID: "internal-5", conversationState: nil, isNew: true, needsIndex: true))
            #expect(try fixture.begin(store, user: 5, update: 2, token: "s-b") == .deferred)
            #expect(try fixture.redis.cli("SMEMBERS", "{tg:5}:queued") == "2")
            _ = try store.finish(Completion(claim: first, stateChange: .set(#"{"flow":"signup","step":2}"#)), deadline: .distantFuture)
            // Update 2 still waits in the stream: update 3, even one the gateway answers itself, goes behind it.
            #expect(try fixture.begin(store, user: 5, update: 3, token: "s-c", needs: false) == .deferred)
            // The worker takes update 2: it sees the state update 1 wrote.
            guard case .proceed(let second?, let read, _, _) = try fixture.begin(store, user: 5, update: 2, token: "w-x", origin: .worker) else {
                Issue.record("the worker could not claim update 2")
                return
            }
            #expect(read?.conversationState == #"{"flow":"signup","step":2}"#)
            _ = try store.finish(Completion(subject: .user(5), updateID: 2, claim: second, origin: .worker), deadline: .distantFuture)
            #expect(
                try fixture.begin(store, user: 5, update: 3, token: "w-x", needs: false, origin: .worker)
                    == .proceed(nil, nil, reply: .none, outboxWaiting: 0))
            #expect(try fixture.redis.cli("SCARD", "{tg:5}:queued") == "0", "nothing of the user waits any more")
            #expect(try fixture.begin(store, user: 5, update: 4, token: "s-d").isClaim, "the next update is processed at once again")
            // Another user is never held up.
            #expect(try fixture.begin(store, user: 6, update: 9, token: "s-e").isClaim)
        }
    }

    @Test func aWorkerWaitsForAWebhookRequestButTakesOverALeaseADeadWorkerLeft() throws {
        try withRedis { fixture in
            let store = fixture.store()
            _ = try fixture.begin(store, user: 5, update: 1, token: "s-webhook")
            guard case .busy(let wait) = try fixture.begin(store, user: 5, update: 2, token: "w-1", origin: .worker) else {
                Issue.record("the worker was not told to wait")
                return
            }
            #expect(wait > 9000)
            try fixture.redis.cli("SET", "{tg:5}:lease", "w-dead", "PX", "60000")
            #expect(try fixture.begin(store, user: 5, update: 2, token: "w-1", origin: .worker).isClaim)
        }
    }

    @Test func doneUpdateIsDuplicateAndHeldUpdateIsInProgressUntilItsLeaseExpires() throws {
        try withRedis { fixture in
            let store = fixture.store()
            guard case .proceed(let first?, _, _, _) = try fixture.begin(store, user: 5, update: 1, token: "s-a") else {
                Issue.record("not claimed")
                return
            }
            guard case .inProgress(let seconds) = try fixture.begin(store, user: 5, update: 1, token: "s-b") else {
                Issue.record("a redelivery of an update in progress was not deferred")
                return
            }
            #expect(seconds == 10)
            // The responder holding it dies: its leases run out on Redis's clock.
            let keys = StateSubjectKeys(subject: .user(5), updateID: 1)
            try fixture.redis.cli("PEXPIRE", keys.update, "1")
            try fixture.redis.cli("PEXPIRE", keys.lease, "1")
            try waitUntil("the leases expire") { (try? fixture.redis.cli("EXISTS", keys.update, keys.lease)) == "0" }
            guard case .proceed(let second?, _, _, _) = try fixture.begin(store, user: 5, update: 1, token: "s-b") else {
                Issue.record("the redelivery after the lease was not claimed")
                return
            }
            // The first responder comes back (it was stalled, not dead): its state is written all
            // the same, never lost, but the lease it no longer holds is left alone.
            let late = try store.finish(Completion(claim: first, stateChange: .set(#"{"late":true}"#)), deadline: .distantFuture)
            #expect(late.leaseWasOurs == false)
            #expect(try fixture.redis.cli("HGET", keys.session, "state") == #"{"late":true}"#)
            #expect(try fixture.redis.cli("GET", keys.lease) == "s-b")
            #expect(try store.finish(Completion(claim: second), deadline: .distantFuture).leaseWasOurs)
            #expect(try fixture.begin(store, user: 5, update: 1, token: "s-c") == .duplicate(outboxWaiting: 0))
            #expect((Int(try fixture.redis.cli("TTL", keys.update)) ?? 0) > 3500)
        }
    }

    @Test func aReplayIsProcessedOnceAlthoughTheUpdateWasDone() throws {
        try withRedis { fixture in
            let store = fixture.store()
            guard case .proceed(let first?, _, _, _) = try fixture.begin(store, user: 5, update: 1, token: "w-a", origin: .worker) else { return }
            _ = try store.finish(Completion(claim: first), deadline: .distantFuture)
            let replay = BeginRequest(
                updateID: 1, subject: .user(5), needsSession: true, newInternalUserID: "x", token: "w-b", origin: .worker, replay: "17-0")
            guard case .proceed(let replayed?, _, _, _) = try store.begin(replay, deadline: .distantFuture) else {
                Issue.record("the replay was not processed")
                return
            }
            var completion = Completion(claim: replayed)
            completion.replay = "17-0"
            completion.origin = .worker
            _ = try store.finish(completion, deadline: .distantFuture)
            #expect(try store.begin(replay, deadline: .distantFuture) == .duplicate(outboxWaiting: 0), "the same replay claimed again")
            #expect(try fixture.begin(store, user: 5, update: 1, token: "s-c") == .duplicate(outboxWaiting: 0), "a redelivery from Telegram")
        }
    }

    @Test func aRepliesSlotIsTakenWithTheClaimAndWhatTheWindowRefusesWaitsInTheOutboxInOrder() throws {
        try withRedis { fixture in
            let store = fixture.store()
            func reply(_ index: Int) -> PendingSend { PendingSend(.sendMessage(chatID: 5, text: "r\(index)"), requestID: "r", index: index) }
            for index in 1...3 {
                let decision = try store.begin(
                    BeginRequest(
                        updateID: Int64(index), subject: .user(5), needsSession: false, newInternalUserID: "", token: "s\(index)", reply: reply(index)
                    ),
                    deadline: .distantFuture)
                #expect(decision == .proceed(nil, nil, reply: .now, outboxWaiting: 0), "\(index) of 3 per 3 s")
            }
            let fourth = try store.begin(
                BeginRequest(updateID: 4, subject: .user(5), needsSession: false, newInternalUserID: "", token: "s4", reply: reply(4)),
                deadline: .distantFuture)
            #expect(fourth == .proceed(nil, nil, reply: .kept, outboxWaiting: 1))
            #expect(try fixture.redis.cli("SMEMBERS", "{tg:5}:queued") == "o", "the user's next updates go behind it")
            let report = try store.finish(
                Completion(subject: .user(5), updateID: 9, claim: nil, tail: [reply(5), reply(6)]), deadline: .distantFuture)
            #expect(report.outboxWaiting == 3)
            var sent: [String] = []
            var done: [UInt8]?
            while case .next(let head, let slot) = try store.advanceOutbox(
                of: .user(5), after: done, maxWaitMilliseconds: 10_000, deadline: .distantFuture)
            {
                sent.append(String(decoding: head.call.parameters, as: UTF8.self))
                if case .reserved = slot {} else { Issue.record("a private chat's slot is reserved with the step: \(slot)") }
                done = head.encoded
            }
            #expect(sent.map { $0.contains("\"r4\"") || $0.contains("\"r5\"") || $0.contains("\"r6\"") } == [true, true, true])
            #expect(sent.first?.contains("r4") == true && sent.last?.contains("r6") == true)
            #expect(try fixture.redis.cli("SCARD", "{tg:5}:queued") == "0", "an empty outbox holds nobody back")
        }
    }

    /// A worker's finish takes the outbox's first step in its own round trip: the same step a
    /// separate `advanceOutbox(after: nil)` takes, for every kind of first call.
    @Test func aFinishAskedToAdvanceTakesTheStepAnAdvanceWouldTake() throws {
        try withRedis { fixture in
            let store = fixture.store()
            func send(_ method: BotMethod, _ index: Int) -> PendingSend { PendingSend(method, requestID: "a", index: index) }
            // The tail of a user's answer (its private chat is the user's id), slots taken before.
            let cases: [(name: String, tail: (Int64) -> [BotMethod], sentBefore: Int, wait: Int64)] = [
                ("empty", { _ in [] }, 0, 10_000),
                ("reserved", { [.sendMessage(chatID: $0, text: "a"), .sendMessage(chatID: $0, text: "b")] }, 0, 10_000),
                ("later: the window is full", { [.sendMessage(chatID: $0, text: "a")] }, 3, 100),
                ("later: stopping", { [.sendMessage(chatID: $0, text: "a")] }, 0, -1),
                ("elsewhere", { _ in [.sendMessage(chatID: -1005, text: "a")] }, 0, 10_000),
                ("unpaced", { _ in [.answerCallbackQuery(callbackQueryID: "q", text: nil, showAlert: false)] }, 0, 10_000),
            ]
            for (number, example) in cases.enumerated() {
                // One user finishes and advances at once, the other finishes and then advances.
                var steps: [OutboxStep] = []
                for user in [Int64(100 + 2 * number), Int64(101 + 2 * number)] {
                    let tail = example.tail(user).enumerated().map { send($0.element, $0.offset) }
                    for _ in 0..<example.sentBefore {
                        #expect(store.reserve(chatID: user, throughBotAPI: false, maxWaitMilliseconds: 0, deadline: .distantFuture) == 0)
                    }
                    var completion = Completion(subject: .user(user), updateID: 1, claim: nil, origin: .worker, tail: tail)
                    if user % 2 == 0 {
                        completion.advanceWithin = example.wait
                        let report = try store.finish(completion, deadline: .distantFuture)
                        steps.append(try #require(report.next, "\(example.name): no step"))
                        #expect(report.outboxWaiting == tail.count, "\(example.name)")
                    } else {
                        _ = try store.finish(completion, deadline: .distantFuture)
                        steps.append(
                            try store.advanceOutbox(of: .user(user), after: nil, maxWaitMilliseconds: example.wait, deadline: .distantFuture))
                    }
                    if tail.isEmpty { #expect(try fixture.redis.cli("SCARD", "{tg:\(user)}:queued") == "0", "\(example.name)") }
                }
                #expect(steps[0].comparable == steps[1].comparable, "\(example.name): \(steps)")
                #expect(steps[0].comparable.kind == example.name.split(separator: ":")[0], "\(example.name): \(steps[0])")
            }
            // After the step the finish took, the next advance goes on from it.
            var completion = Completion(
                subject: .user(7), updateID: 1, claim: nil, origin: .worker,
                tail: [send(.sendMessage(chatID: 7, text: "a"), 0), send(.sendMessage(chatID: 7, text: "b"), 1)])
            completion.advanceWithin = 10_000
            guard case .next(let head, _) = try store.finish(completion, deadline: .distantFuture).next else {
                Issue.record("no first call")
                return
            }
            guard
                case .next(let second, .reserved) = try store.advanceOutbox(
                    of: .user(7), after: head.encoded, maxWaitMilliseconds: 10_000, deadline: .distantFuture)
            else {
                Issue.record("no second call")
                return
            }
            #expect(String(decoding: second.call.parameters, as: UTF8.self).contains(#""b""#))
            #expect(try store.advanceOutbox(of: .user(7), after: second.encoded, maxWaitMilliseconds: 10_000, deadline: .distantFuture) == .empty)
        }
    }

    @Test(arguments: [Int64(0), 7, -7, 1_234_567_890_123, -1_001_234_567_890, .max, .min])
    func keysAreTheHashTagAndTheirName(id: Int64) {
        for subject in [StateSubject.user(id), .chat(id)] {
            for updateID in [Int64(0), 9, .max, .min] {
                let keys = StateSubjectKeys(subject: subject, updateID: updateID)
                let tag = subject.hashTag
                #expect(keys.update == "\(tag):update:\(updateID)")
                #expect(
                    [keys.pace, keys.session, keys.lease, keys.queued, keys.outbox]
                        == ["\(tag):pacing", "\(tag):session", "\(tag):lease", "\(tag):queued", "\(tag):outbox"])
            }
        }
    }

    @Test func commandsOfAnyBytesReachRedisIntact() throws {
        // The gateway writes Redis's protocol itself (hiredis only sends it and reads replies).
        let encoded = RESP.encode([Array("SET".utf8), [0, 13, 10, 255], []])
        #expect(encoded == Array("*3\r\n$3\r\nSET\r\n$4\r\n".utf8) + [0, 13, 10, 255] + Array("\r\n$0\r\n\r\n".utf8))
        // A script call written straight from its keys and arguments is the same command.
        let script = RedisScripts.pause
        let function = script.function
        func fcall(keys: [String], arguments: [[UInt8]]) -> [UInt8] {
            ScriptCall(script, keys: keys, arguments: arguments).bytes
        }
        let keys = ["{tg:1}:ü", "", "{tg:1}:\(String(repeating: "k", count: 300))"]
        let arguments: [[UInt8]] = [[], [0, 13, 10], Array("12345678901".utf8)]
        #expect(
            fcall(keys: keys, arguments: arguments)
                == RESP.encode([Array("FCALL".utf8), Array(function.utf8), Array("3".utf8)] + keys.map { Array($0.utf8) } + arguments))
        #expect(fcall(keys: [], arguments: []) == Array("*3\r\n$5\r\nFCALL\r\n$\(function.utf8.count)\r\n\(function)\r\n$1\r\n0\r\n".utf8))
        // Counts and lengths of several digits, against the protocol written out by hand.
        let many: [[UInt8]] = (0..<12).map { [UInt8](repeating: 0x61, count: $0 * 97) }
        let byHand = "*12\r\n" + many.map { "$\($0.count)\r\n" + String(decoding: $0, as: UTF8.self) + "\r\n" }.joined()
        #expect(RESP.encode(many) == Array(byHand.utf8))
        let manyKeys = (0..<11).map { "{tg:\($0)}:" + String(repeating: "k", count: $0 * 13) }
        let fcallByHand =
            "*25\r\n$5\r\nFCALL\r\n$\(function.utf8.count)\r\n\(function)\r\n$2\r\n11\r\n"
            + manyKeys.map { "$\($0.utf8.count)\r\n\($0)\r\n" }.joined()
            + many.prefix(11).map { "$\($0.count)\r\n" + String(decoding: $0, as: UTF8.self) + "\r\n" }.joined()
        #expect(fcall(keys: manyKeys, arguments: Array(many.prefix(11))) == Array(fcallByHand.utf8))
        // A subject's keys and numbers, written in place, are the same command as their text,
        // and the call's slot is its first key's.
        for subject in [StateSubject.user(7), .user(-1_234_567_890_123), .chat(.min), .user(.max)] {
            for updateID in [Int64(0), 9, -10, .max, .min] {
                var call = ScriptCall(script, keys: 3, arguments: 3)
                call.key(subject, .update, updateID)
                call.key(subject, .pace)
                call.key(.chat(-100), .session)
                call.argument(updateID)
                call.argument("ü")
                call.argument([UInt8](repeating: 0x62, count: 120))
                let text = StateSubjectKeys(subject: subject, updateID: updateID)
                let other = StateSubjectKeys(subject: .chat(-100), updateID: 0)
                #expect(
                    call.bytes
                        == fcall(
                            keys: [text.update, text.pace, other.session],
                            arguments: [Array(String(updateID).utf8), Array("ü".utf8), [UInt8](repeating: 0x62, count: 120)]))
                #expect(call.slot == ClusterSlots.slot(of: Array(subject.hashTag.utf8)))
            }
        }
        try withRedis { fixture in
            let connection = RedisConnection(settings: .init(fixture.settings), clock: monotonicNanoseconds)
            let value: [UInt8] = [0, 13, 10, 36, 42, 255, 254] + [UInt8](repeating: 0x41, count: 70_000) + Array("\r\n".utf8)
            let key = Array("{tg:1}:bytes".utf8)
            #expect(try connection.command([Array("SET".utf8), key, value]) == .status("OK"))
            #expect(try connection.command([Array("GET".utf8), key]) == .string(value))
            #expect(try connection.command([Array("ECHO".utf8), []]) == .string([]))
            let replies = try connection.pipeline([[Array("STRLEN".utf8), key], [Array("PING".utf8)]], deadline: .distantFuture)
            #expect(replies == [.integer(Int64(value.count)), .status("PONG")])
        }
    }

    @Test func theGatewayPathWritesTheMarkAndThePaceOnceEach() throws {
        try withRedis { fixture in
            // A rate window of a minute: the bucket outlives the chat's 3-second window.
            let store = fixture.store(capacity: 2, window: 60_000)
            let reply = PendingSend(.sendMessage(chatID: 5, text: "unknown command"), requestID: "r", index: 0)
            func post(_ update: Int64) throws -> BeginDecision {
                try store.begin(
                    BeginRequest(updateID: update, subject: .user(5), needsSession: false, newInternalUserID: "", token: "s\(update)", reply: reply),
                    deadline: .distantFuture)
            }
            _ = try fixture.redis.cli("CONFIG", "RESETSTAT")
            #expect(try post(1) == .proceed(nil, nil, reply: .now, outboxWaiting: 0))
            let calls = commandCalls(inCommandstats: try fixture.redis.cli("INFO", "commandstats"))
            #expect(calls["set"] == 2 && calls["zadd"] == nil && calls["pexpireat"] == nil, "the mark and the pace, one write each: \(calls)")
            // The bucket (one of two tokens left, never warned) and the window (one send at the
            // bucket's time, kept 3 s and a second).
            let pace = try pacingRecord("{tg:5}:pacing", in: fixture.redis)
            #expect(pace.count == 6, "TOKENS AT UNTIL WARNED KEEP and one send: \(pace)")
            if pace.count == 6 {
                #expect(pace[0] == 1000 && pace[3] == 0 && pace[5] == pace[1], "\(pace)")
                #expect(pace[2] == pace[1] + 120_000 && pace[4] == pace[5] + 4_000, "\(pace)")
            }
            let ttl = try #require(Int(try fixture.redis.cli("PTTL", "{tg:5}:pacing")))
            #expect((119_000...120_000).contains(ttl), "two rate windows: \(ttl)")
            // A duplicate writes nothing; the second update takes the last token and a slot.
            #expect(try post(1) == .duplicate(outboxWaiting: 0))
            #expect(try post(2) == .proceed(nil, nil, reply: .now, outboxWaiting: 0))
            #expect(try post(3) == .limited(warn: true))
            #expect(try fixture.redis.cli("GET", "{tg:5}:update:3") == "done", "a limited update is done")
            let after = try pacingRecord("{tg:5}:pacing", in: fixture.redis)
            #expect(after.count == 7 && after[3] > 0, "warned, and the window's two sends: \(after)")
        }
    }

    @Test func theMarkSetFirstIsTheClaimsLeaseAndNeverOutlivesARefusalOrADeferral() throws {
        try withRedis { fixture in
            let store = fixture.store(capacity: 2, window: 60_000)
            #expect(try fixture.begin(store, user: 5, update: 1, token: "s-a").isClaim)
            #expect(try fixture.redis.cli("GET", "{tg:5}:update:1") == "lease:s-a")
            let lease = try #require(Int(try fixture.redis.cli("PTTL", "{tg:5}:update:1")))
            #expect((9_000...10_000).contains(lease), "the lease's time, not the dedupe TTL: \(lease)")
            // Deferred behind the claim: no mark, so a redelivery is deferred again, not "in progress".
            #expect(try fixture.begin(store, user: 5, update: 2, token: "s-b") == .deferred)
            #expect(try fixture.redis.cli("EXISTS", "{tg:5}:update:2") == "0")
            // Refused by the rate limit (both tokens taken): done, a redelivery is a duplicate.
            #expect(try fixture.begin(store, user: 5, update: 3, token: "s-c") == .limited(warn: true))
            #expect(try fixture.redis.cli("GET", "{tg:5}:update:3") == "done")
            #expect(try fixture.begin(store, user: 5, update: 3, token: "s-d") == .duplicate(outboxWaiting: 0))
        }
    }

    @Test func aWindowKeyLivesUntilItsLatestReservationHasLeftTheWindow() throws {
        try withRedis { fixture in
            let store = fixture.store()
            let window = RedisScripts.windowKey(of: 5)
            // A new window: the first send, now, keeps it one window (3 s) and a second.
            #expect(store.reserve(chatID: 5, throughBotAPI: false, maxWaitMilliseconds: 0, deadline: .distantFuture) == 0)
            let first = try #require(Int(try fixture.redis.cli("PTTL", window)))
            #expect((3_500...4_000).contains(first), "\(first)")
            // Two more fill the window; the fourth is reserved 3 s ahead and moves the expiry on.
            for _ in 0..<2 { _ = store.reserve(chatID: 5, throughBotAPI: false, maxWaitMilliseconds: 0, deadline: .distantFuture) }
            let wait = try #require(store.reserve(chatID: 5, throughBotAPI: false, maxWaitMilliseconds: 5_000, deadline: .distantFuture))
            #expect((2_500...3_000).contains(wait), "\(wait)")
            let later = try #require(Int(try fixture.redis.cli("PTTL", window)))
            #expect(later >= wait + 3_500 && later <= wait + 4_000, "\(later) after a reservation \(wait) ms ahead")
            // A send now never shortens the expiry a later reservation set (the bot's window:
            // a send reserved 2 s ahead, then one now).
            #expect(store.reserveBotAPI(afterMilliseconds: 2_000, maxWaitMilliseconds: 5_000, deadline: .distantFuture) == 2_000)
            #expect(store.reserveBotAPI(afterMilliseconds: 0, maxWaitMilliseconds: 0, deadline: .distantFuture) == 0)
            let bot = try #require(Int(try fixture.redis.cli("PTTL", RedisScripts.botWindowKey)))
            #expect(bot > 3_500, "\(bot): the send 2 s ahead keeps the window")
        }
    }

    static func policy(capacity: Int) -> StatePolicy {
        StatePolicy(
            rateLimitRequests: capacity, rateLimitWindowMilliseconds: 1000, sessionTTLSeconds: 86_400, dedupeTTLSeconds: 3600,
            leaseMilliseconds: 10_000)
    }

    @Test func aLibrarysNameIsItsScriptsNameAndADigestOfItsText() {
        // A function found in Redis under a script's name is called as that script (a
        // connection loads the library only when the function is missing, and takes "already
        // exists" as loaded): the name must change with any change of the text.
        let probe = RedisScript(name: "probe", body: "return 1")
        let names = [
            probe, RedisScript(name: "probe", body: "return 1"), RedisScript(name: "probe", body: "return 2"),
            RedisScript(name: "probe", helpers: "local X = 1\n", body: "return 1"),
            RedisScripts.begin(Self.policy(capacity: 20)), RedisScripts.begin(Self.policy(capacity: 21)),
        ].map(\.function)
        #expect(names[0] == names[1])
        #expect(Set(names).count == 5, "\(names)")
        for name in names {
            #expect(name.wholeMatch(of: /[a-z_]+_[0-9a-f]{16}/) != nil, "\(name): letters, digits and _ only")
        }
        #expect(probe.library.hasPrefix("#!lua name=\(probe.function)\n"))
        #expect(probe.library.contains("redis.register_function('\(probe.function)', function(KEYS, ARGV)"))
    }

    @Test func aLibraryIsLoadedWhereItIsMissingAndEachCallRunsOnce() throws {
        try withRedis { fixture in
            let connection = RedisConnection(settings: .init(fixture.settings), clock: monotonicNanoseconds)
            let counting = RedisScript(name: "load_test_incr", body: "return redis.call('INCR', KEYS[1])")
            let calls = (1...3).map { ScriptCall(counting, keys: ["{load-test}:\($0)"], arguments: []) }
            func counts() throws -> [String] { try (1...3).map { try fixture.redis.cli("GET", "{load-test}:\($0)") } }
            // Not in Redis yet: the calls find the function missing, the library is loaded, and
            // the calls are sent again, each run once.
            #expect(try connection.evaluateAll(calls) == [.integer(1), .integer(1), .integer(1)])
            #expect(try counts() == ["1", "1", "1"])
            // Gone again (a restart without persistence): the same, one call at a time.
            try fixture.redis.cli("FUNCTION", "FLUSH")
            #expect(try connection.evaluate(calls[0]) == .integer(2))
            try fixture.redis.cli("FUNCTION", "FLUSH")
            #expect(try connection.evaluateAll(calls) == [.integer(3), .integer(2), .integer(2)])
            #expect(try counts() == ["3", "2", "2"])
            // A batch of two scripts, one of them missing: only its call is sent again.
            let other = RedisScript(name: "load_test_incr_other", body: "return redis.call('INCR', KEYS[1])")
            let mixed = [calls[0], ScriptCall(other, keys: ["{load-test}:other"], arguments: []), calls[2]]
            #expect(try connection.evaluateAll(mixed) == [.integer(4), .integer(1), .integer(3)])
            #expect(try counts() == ["4", "2", "3"])
            // Loaded by another connection: a new one calls at once, loading nothing.
            _ = try fixture.redis.cli("CONFIG", "RESETSTAT")
            let fresh = RedisConnection(settings: .init(fixture.settings), clock: monotonicNanoseconds)
            #expect(try fresh.evaluate(calls[1]) == .integer(3))
            let stats = commandCalls(inCommandstats: try fixture.redis.cli("INFO", "commandstats"))
            #expect(stats["fcall"] == 1 && stats["function|load"] == nil, "\(stats)")
        }
    }

    @Test func everyCallReadsTheClockAnew() throws {
        // A script's helpers are made once, when its library is loaded, the clock's among them;
        // each call must still read the time of its own.
        try withRedis { fixture in
            let store = fixture.store()
            for _ in 0..<3 { #expect(store.reserve(chatID: 6, throughBotAPI: false, maxWaitMilliseconds: 0, deadline: .distantFuture) == 0) }
            usleep(300_000)
            let wait = try #require(store.reserve(chatID: 6, throughBotAPI: false, maxWaitMilliseconds: 5_000, deadline: .distantFuture))
            #expect(wait <= 2_700, "\(wait) ms: the window's first send is 300 ms old at least, of a 3 s window")
        }
    }

    @Test func aPauseFromA429DelaysEveryBotAPISendButNotAWebhookReply() throws {
        try withRedis { fixture in
            let store = fixture.store()
            store.pause(milliseconds: 1500, deadline: .distantFuture)
            let wait = try #require(store.reserve(chatID: 5, throughBotAPI: true, maxWaitMilliseconds: 5000, deadline: .distantFuture))
            #expect((1300...1500).contains(wait), "\(wait)")
            #expect(store.reserve(chatID: 6, throughBotAPI: true, maxWaitMilliseconds: 500, deadline: .distantFuture) == nil)
            #expect(store.reserve(chatID: 7, throughBotAPI: false, maxWaitMilliseconds: 0, deadline: .distantFuture) == 0)
        }
    }

    @Test func theBotBudgetsSlotIsAskedOncePerSendItAdmitsNotPerAttempt() throws {
        try withRedis { fixture in
            // Two processes (each its own view of the budget), 1,000 attempts each at once.
            let stores = [fixture.store(), fixture.store()]
            _ = try fixture.redis.cli("CONFIG", "RESETSTAT")
            var admitted = 0
            for _ in 0..<1_000 {
                for store in stores where store.reserveBotAPI(afterMilliseconds: 0, maxWaitMilliseconds: 0, deadline: .distantFuture) == 0 {
                    admitted += 1
                }
            }
            let calls = commandCalls(inCommandstats: try fixture.redis.cli("INFO", "commandstats"))
            print("bot budget 30/s, 2 x 1,000 sends attempted at once: \(admitted) admitted, \(calls["evalsha"] ?? 0) scripts")
            #expect(admitted == 30)
            #expect((calls["evalsha"] ?? 0) <= 30 + 2, "one call per admitted send and one refusal per process: \(calls)")

            // Without a budget (OUTGOING_PER_SECOND=0) no window is kept, only the pause is read
            // (one PTTL a send); a 429 met by one process pauses the other at once.
            var policy = StatePolicy(
                rateLimitRequests: 100, rateLimitWindowMilliseconds: 1000, sessionTTLSeconds: 86_400, dedupeTTLSeconds: 3600,
                leaseMilliseconds: 10_000)
            policy.outgoing.botMessagesPerSecond = 0
            let unbudgeted = [fixture.store(policy: policy), fixture.store(policy: policy)]
            _ = try fixture.redis.cli("CONFIG", "RESETSTAT")
            for _ in 0..<1_000 {
                for store in unbudgeted {
                    #expect(store.reserveBotAPI(afterMilliseconds: 0, maxWaitMilliseconds: 0, deadline: .distantFuture) == 0)
                }
            }
            let reads = commandCalls(inCommandstats: try fixture.redis.cli("INFO", "commandstats"))
            #expect(reads["evalsha"] == nil, "\(reads)")
            #expect(reads["pttl"] == 2_000 && reads["zadd"] == nil, "\(reads)")
            unbudgeted[0].pause(milliseconds: 1_500, deadline: .distantFuture)
            let wait = try #require(unbudgeted[1].reserveBotAPI(afterMilliseconds: 0, maxWaitMilliseconds: 5_000, deadline: .distantFuture))
            #expect((1_300...1_500).contains(wait), "\(wait)")
            #expect(unbudgeted[0].reserveBotAPI(afterMilliseconds: 0, maxWaitMilliseconds: 100, deadline: .distantFuture) == nil)
        }
    }

    @Test func aRenewalNeverTakesAPartitionBackAfterItsRelease() throws {
        // The cause of a flaky stop test: the heartbeat renewed (with the take script) a
        // partition its worker had just released, and the partition stayed owned after exit.
        try withRedis { fixture in
            let partitions = RedisPartitionStore(redis: fixture.settings, blockMilliseconds: 0, clock: monotonicNanoseconds)
            // Typed throws do not pass through #expect: each answer is taken first.
            let taken = try partitions.takeLease(partition: 3, worker: "w1", milliseconds: 60_000)
            let takenByAnother = try partitions.takeLease(partition: 3, worker: "w2", milliseconds: 60_000)
            let takenToo = try partitions.takeLease(partition: 4, worker: "w2", milliseconds: 60_000)
            let renewed = try partitions.renewLeases([(3, "w1"), (3, "w2"), (4, "w2"), (5, "w1")], milliseconds: 60_000)
            partitions.releaseLease(partition: 3, worker: "w1")
            let renewedAfterRelease = try partitions.renewLeases([(3, "w1")], milliseconds: 60_000)
            #expect(taken && !takenByAnother && takenToo)
            #expect(renewed == [true, false, true, false], "each lease renewed only by its holder; a free one never taken")
            #expect(renewedAfterRelease == [false])
            #expect(try fixture.redis.cli("EXISTS", "{tgq:3}:owner") == "0")
        }
    }

    /// Appends `{"update_id":ID}` to the partition's stream, as the front door stores an update.
    private func addUpdate(_ id: Int, to partition: Int, in fixture: StoreFixture) throws {
        _ = try fixture.redis.cli("XADD", QueueKeys(partition: partition).stream, "*", "u", "{\"update_id\":\(id)}")
    }

    /// The body of an update entry, as text.
    private func updateID(_ entry: StreamEntry?) -> String? {
        guard case .update(let body, _, _)? = entry?.content else { return nil }
        return String(decoding: body, as: UTF8.self)
    }

    @Test func entriesReadTogetherAndLeftUnworkedAreClaimedInOrderByThePartitionsNextHolder() throws {
        try withRedis { fixture in
            let partitions = RedisPartitionStore(redis: fixture.settings, blockMilliseconds: 100, clock: monotonicNanoseconds)
            try partitions.prepare(partition: 2)
            func add(_ id: Int) throws { try addUpdate(id, to: 2, in: fixture) }
            for id in 1...5 { try add(id) }
            // The first holder reads five at once, works the first, and stops.
            let read = try partitions.readNew(partition: 2, worker: "w1", count: StreamWorkers.readCount, blockMilliseconds: 10)
            #expect(read.map(updateID) == (1...5).map { "{\"update_id\":\($0)}" })
            try partitions.acknowledge(read[0])
            try add(6)
            // The next holder claims the four left, oldest first, before it reads anything new.
            var claimed: [String?] = []
            while let entry = try partitions.claimPending(partition: 2, worker: "w2", idleMilliseconds: 0) {
                claimed.append(updateID(entry))
                try partitions.acknowledge(entry)
            }
            #expect(claimed == (2...5).map { "{\"update_id\":\($0)}" })
            let next = try partitions.readNew(partition: 2, worker: "w2", count: StreamWorkers.readCount, blockMilliseconds: 10)
            #expect(next.map(updateID) == ["{\"update_id\":6}"])
            #expect(try fixture.redis.cli("XLEN", "{tgq:2}:stream") == "1")
        }
    }

    @Test func anAcknowledgementTakesTheNextEntriesWithTheFirstsAttemptCountedInTheSameRoundTrip() throws {
        try withRedis { fixture in
            let partitions = RedisPartitionStore(redis: fixture.settings, blockMilliseconds: 100, clock: monotonicNanoseconds)
            try partitions.prepare(partition: 5)
            for id in 1...4 { try addUpdate(id, to: 5, in: fixture) }
            let read = try partitions.readNew(partition: 5, worker: "w1", count: 2, blockMilliseconds: 10)
            try #require(read.count == 2)
            let first = try partitions.countAttempt(read[0])
            // The second, read already: its attempt counted with the first's acknowledgement.
            let second = try partitions.acknowledge(read[0], countingAttemptAt: read[1])
            #expect(first == 1 && second == 1)
            // The third and fourth, new: read for the worker with the second's acknowledgement,
            // the third's attempt counted.
            var taken: (entries: [StreamEntry], firstAttempt: Int) = ([], 0)
            if fixture.redis.cluster == nil {
                let commands = try fixture.redis.monitoring(until: #""XREADGROUP""#, #""HINCRBY""#) {
                    taken = try partitions.acknowledge(read[1], readingNewFor: "w1", count: StreamWorkers.readCount)
                }
                #expect(commands.count == 1 + commands.filter { $0.contains("[0 lua]") }.count, "one command from the client: \(commands)")
            } else {
                taken = try partitions.acknowledge(read[1], readingNewFor: "w1", count: StreamWorkers.readCount)
            }
            #expect(taken.entries.map(updateID) == ["{\"update_id\":3}", "{\"update_id\":4}"])
            #expect(taken.firstAttempt == 1)
            try #require(taken.entries.count == 2)
            #expect(try fixture.redis.cli("HGET", "{tgq:5}:attempts", taken.entries[0].id) == "1")
            #expect(try fixture.redis.cli("HEXISTS", "{tgq:5}:attempts", taken.entries[1].id) == "0", "not attempted yet")
            let pending = try fixture.redis.cli("XPENDING", "{tgq:5}:stream", "workers").split(separator: "\n").map(String.init)
            #expect(pending.first == "2" && pending.contains("w1"), "both pending for the worker: \(pending)")
            // Nothing new after the fourth: its acknowledgement reads nothing, and the stream is empty.
            #expect(try partitions.acknowledge(taken.entries[0], countingAttemptAt: taken.entries[1]) == 1)
            let none = try partitions.acknowledge(taken.entries[1], readingNewFor: "w1", count: StreamWorkers.readCount)
            #expect(none.entries.isEmpty)
            #expect(try fixture.redis.cli("XLEN", "{tgq:5}:stream") == "0")
            #expect(try fixture.redis.cli("HLEN", "{tgq:5}:attempts") == "0")
            #expect(try fixture.redis.cli("XPENDING", "{tgq:5}:stream", "workers").hasPrefix("0"))
        }
    }

    @Test func everyKeyOfAnUpdateSharesOneClusterSlot() throws {
        try withRedis { fixture in
            let keys = StateSubjectKeys(subject: .user(123_456_789), updateID: 42)
            let slots = try [
                keys.update, keys.pace, keys.session, keys.lease, keys.queued, keys.outbox, RedisScripts.windowKey(of: 123_456_789),
            ]
            .map { try fixture.redis.cli("CLUSTER", "KEYSLOT", $0) }
            #expect(Set(slots).count == 1)
            let chat = StateSubjectKeys(subject: .chat(-100_123), updateID: 1)
            #expect(chat.session == "{tgc:-100123}:session")
            #expect(RedisScripts.windowKey(of: -100_123) == chat.pace)
            let bot = try [RedisScripts.botWindowKey, RedisScripts.botPauseKey].map { try fixture.redis.cli("CLUSTER", "KEYSLOT", $0) }
            #expect(Set(bot).count == 1)
        }
    }
}

/// The gateway's Redis state store on a test's redis-server, with a policy per test.
struct StoreFixture {
    let redis: RedisServer

    init(_ redis: RedisServer) {
        self.redis = redis
    }

    var settings: GatewayConfig.RedisSettings {
        GatewayConfig.RedisSettings(
            host: "127.0.0.1", port: redis.port, socket: redis.cluster == nil ? redis.socketPath : nil, password: redis.password.map(Secret.init),
            database: 0, connectTimeoutSeconds: 1, commandTimeoutSeconds: 1,
            clusterNodes: redis.cluster?.nodes.prefix(2).map { GatewayConfig.HostPort(host: "127.0.0.1", port: $0.port) } ?? [])
    }

    func store(capacity: Int = 100, window: Int64 = 1000, lease: Int64 = 10_000, policy: StatePolicy? = nil) -> RedisStateStore {
        Self.store(config: settings, capacity: capacity, window: window, lease: lease, policy: policy)
    }

    /// A store on the Redis (or cluster) `config` names.
    static func store(
        config: GatewayConfig.RedisSettings, capacity: Int = 100, window: Int64 = 1000, lease: Int64 = 10_000, policy: StatePolicy? = nil
    ) -> RedisStateStore {
        RedisStateStore(
            config: config,
            policy: policy
                ?? StatePolicy(
                    rateLimitRequests: capacity, rateLimitWindowMilliseconds: window, sessionTTLSeconds: 86_400, dedupeTTLSeconds: 3600,
                    leaseMilliseconds: lease),
            warnings: DependencyWarnings(clock: monotonicNanoseconds), logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() },
            clock: monotonicNanoseconds)
    }

    func begin(
        _ store: RedisStateStore, user: Int64, update: Int64, token: String, needs: Bool = true, origin: BeginRequest.Origin = .webhook
    ) throws -> BeginDecision {
        try store.begin(
            BeginRequest(
                updateID: update, subject: .user(user), needsSession: needs, newInternalUserID: "internal-\(user)", token: token, origin: origin),
            deadline: .distantFuture)
    }
}

extension BeginDecision {
    var isClaim: Bool {
        if case .proceed(.some, _, _, _) = self { return true }
        return false
    }
}

extension OutboxStep {
    /// The step without its exact wait (Redis's clock moves between two calls) and its chat:
    /// which call of the answer came first (its id and method), the slot's kind, and for a wait
    /// whether it is positive.
    var comparable: (head: String?, kind: String, waits: Bool) {
        switch self {
        case .empty: (nil, "empty", false)
        case .unreadable: ("?", "unreadable", false)
        case .next(let send, .unpaced): ("\(send.id) \(send.call.name)", "unpaced", false)
        case .next(let send, .elsewhere): ("\(send.id) \(send.call.name)", "elsewhere", false)
        case .next(let send, .reserved(let wait)): ("\(send.id) \(send.call.name)", "reserved", wait > 0)
        case .next(let send, .later(let wait)): ("\(send.id) \(send.call.name)", "later", wait > 0)
        }
    }
}
