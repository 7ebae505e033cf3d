import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Queue mode end to end: nginx, the pool under spawn-fcgi with its workers, a real
/// redis-server and the stand-ins, checked from what the stand-ins recorded.
@Suite(.serialized) struct QueueModeThroughNginxTests {
    /// Queue mode with `partitions` partitions and enough workers per process for all of them.
    static func queueEnvironment(partitions: Int, workers: Int, _ extra: [String: String] = [:]) -> [String: String] {
        [
            "DELIVERY_MODE": "queue", "QUEUE_PARTITIONS": "\(partitions)", "QUEUE_WORKERS": "\(workers)", "QUEUE_LEASE": "2",
            // The stand-in Bot API has no bot-wide limit; Telegram's (30/s) is not what is measured here.
            "OUTGOING_PER_SECOND": "0", "RATE_LIMIT_REQUESTS": "100",
        ].merging(extra) { _, new in new }
    }

    /// The texts the Bot API stand-in was asked to send, in order.
    private func sentTexts(_ stack: LocalStack) -> [String] {
        stack.botAPICalls().filter { $0.method == "sendMessage" }.compactMap { $0.params["text"] as? String }
    }

    private func gatewayctl(_ stack: LocalStack, _ arguments: String...) throws -> (code: Int32, output: String) {
        let result = try ChildProcess.runCapturing(GatewayCtlTests.binary, arguments + ["--env-file", stack.directory.appending(path: ".env").path])
        #expect(!result.output.contains(LocalStack.token), "gatewayctl printed the bot token")
        return result
    }

    @Test func aSlowServiceCapsSyncModeButNotQueueMode() throws {
        let updates = { (count: Int, base: Int) in (0..<count).map { textUpdate(id: base + $0, user: base + $0, text: "hi \($0)") } }
        // Sync: 40 threads, so Telegram's 40 connections are the limit, as in production.
        let (sync, syncAtOnce) = try withStack(
            processes: 2, threads: 20, redis: (nil, false), standins: true, environment: ["OUTGOING_PER_SECOND": "0"]
        ) { stack, _ in
            try stack.control(["service": "conversation", "delay_ms": 2000])
            let report = try TelegramSender(stack: stack, connections: 40).deliver(updates(160, 10_000))
            return (report, Self.callsAtOnce(stack))
        }
        let syncRate = 160 / sync.seconds
        #expect(sync.undelivered == 0)
        #expect(syncAtOnce <= 40, "sync mode calls the service from Telegram's 40 connections, one call each at a time")

        let count = 1600  // two per partition
        let (queue, processed, queueAtOnce) = try withStack(
            processes: 2, threads: 8, redis: (nil, false), standins: true,
            environment: Self.queueEnvironment(partitions: 800, workers: 400)
        ) { stack, redis in
            try stack.control(["service": "conversation", "delay_ms": 2000])
            // Measure processing, not start-up: every partition has its worker first.
            try waitUntil("every partition has a worker", timeout: 30) {
                (try? #require(redis).cli("keys", "{tgq:*}:owner"))?.split(whereSeparator: \.isNewline).count == 800
            }
            let started = monotonicNow()
            let report = try TelegramSender(stack: stack, connections: 40).deliver(updates(count, 100_000))
            try waitUntil("every update is processed", timeout: 60) {
                usleep(200_000)
                return stack.botAPICallCount() >= count
            }
            // Processed: from the first post to the last answer the Bot API stand-in received.
            let seconds = try #require(stack.botAPICallTimes().last) - started
            if ProcessInfo.processInfo.environment["QUEUE_DEBUG"] != nil {
                let times = stack.serviceRequestTimes().map { Int($0 - started) }
                print("service calls per second:", Dictionary(grouping: times) { $0 }.mapValues(\.count).sorted { $0.key < $1.key })
            }
            return (report, seconds, Self.callsAtOnce(stack))
        }
        let queueRate = Double(count) / processed
        print(
            "slow service (2 s), 40 senders: sync \(Int(syncRate)) updates/s, \(syncAtOnce) service calls at once; queue "
                + "\(Int(queueRate)) updates/s processed (\(String(format: "%.1f", queueRate / syncRate))x), \(queueAtOnce) calls at once, "
                + "acknowledgements p50 \(String(format: "%.1f", queue.percentile(0.5))) ms p99 \(String(format: "%.1f", queue.percentile(0.99))) ms")
        #expect(queue.undelivered == 0)
        #expect(queue.statuses[200] == count)
        // The workers, not Telegram's connections, set how many calls the service gets at once.
        // (Counted, not timed: the rates above swing with the machine's speed.)
        #expect(queueAtOnce >= 10 * syncAtOnce, "queue mode: \(queueAtOnce) service calls at once against sync mode's \(syncAtOnce)")
    }

    /// The most service calls the stand-in held at once: each lasts 2 s, so calls that arrived
    /// within 1.9 s of each other overlapped.
    private static func callsAtOnce(_ stack: LocalStack) -> Int {
        busiestWindow(stack.serviceRequestTimes(), seconds: 1.9).count
    }

    /// The names of `pid`'s threads (`comm`), as `top -H` shows them.
    private func threadNames(of pid: pid_t) -> [String] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.compactMap { task in
            (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    @Test func aResponderNamesItsThreadsForTop() throws {
        try withStack(processes: 1, threads: 3, redis: (nil, false), environment: Self.queueEnvironment(partitions: 4, workers: 4)) { stack, _ in
            let names = threadNames(of: try #require(stack.poolPIDs.first))
            #expect(Set(names.filter { $0.hasPrefix("fastcgi-") }) == ["fastcgi-0", "fastcgi-1", "fastcgi-2"], "\(names)")
            #expect(
                Set(names.filter { $0.hasPrefix("worker-") }) == ["worker-0", "worker-1", "worker-2", "worker-3", "worker-4"],
                "QUEUE_WORKERS and the one for retiring streams: \(names)")
            #expect(names.filter { $0 == "heartbeat" }.count == 1, "\(names)")
        }
    }

    @Test func anEntryReadByAWorkerWhoseLeaseRanOutIsTakenByTheHolder() throws {
        // A worker whose lease ran out on Redis's clock can still read an entry after the new
        // holder drained the partition, and then leave it pending: it must not stay there. The
        // cause of aSlowService…'s rare timeouts (its 800 workers' renewals run late at start).
        try withStack(processes: 1, threads: 2, redis: (nil, false), standins: true, environment: Self.queueEnvironment(partitions: 1, workers: 1)) {
            stack, redis in
            let redis = try #require(redis)
            try waitUntil("the partition has a worker", timeout: 30) { (try? redis.cli("GET", "{tgq:0}:owner")).map { !$0.isEmpty } == true }
            sleep(1)  // the holder has drained what was pending and waits for new entries
            // An update added and read by another consumer at once: the holder never reads it.
            let read = """
                local id = redis.call('XADD', KEYS[1], '*', 'u', ARGV[1], 'a', '0')
                redis.call('XREADGROUP', 'GROUP', 'workers', 'gone', 'COUNT', '1', 'STREAMS', KEYS[1], '>')
                return id
                """
            _ = try redis.cli("EVAL", read, "1", "{tgq:0}:stream", String(decoding: textUpdate(id: 900, user: 900, text: "hi"), as: UTF8.self))
            try waitUntil("the update is answered", timeout: 15) { stack.botAPICallCount() >= 1 }
            #expect(sentTexts(stack).count == 1)
        }
    }

    @Test func aUsersUpdatesAreProcessedInOrderAndOnce() throws {
        try withStack(processes: 2, threads: 4, redis: (nil, false), standins: true, environment: Self.queueEnvironment(partitions: 4, workers: 4)) {
            stack, _ in
            try stack.control(["service": "conversation", "delay_ms": 150])
            for index in 1...5 {
                let response = try stack.post(textUpdate(id: 500 + index, user: 7, text: "m\(index)"))
                #expect(response.status == 200)
                #expect(response.body.isEmpty, "queue mode answers Telegram without a webhook reply")
            }
            // Telegram redelivers one of them: acknowledged, not processed again.
            #expect(try stack.post(textUpdate(id: 501, user: 7, text: "m1")).status == 200)
            try waitUntil("five answers are sent", timeout: 20) { sentTexts(stack).count >= 5 }
            usleep(500_000)
            let texts = sentTexts(stack)
            #expect(texts.count == 5)
            #expect(texts.map { $0.hasPrefix("You said: m") } == Array(repeating: true, count: 5))
            #expect(texts.map { String($0.dropFirst(11).prefix(1)) } == ["1", "2", "3", "4", "5"])
            #expect(stack.serviceRequests().compactMap { $0.request["text"] as? String } == ["m1", "m2", "m3", "m4", "m5"])
        }
    }

    @Test func workersKilledMidProcessingLoseNothingAndDoubleNothingTheUserSees() throws {
        try withStack(processes: 2, threads: 4, redis: (nil, false), standins: true, environment: Self.queueEnvironment(partitions: 8, workers: 8)) {
            stack, redis in
            try stack.control(["service": "conversation", "delay_ms": 2000])
            let users = 40
            for index in 0..<users { #expect(try stack.post(textUpdate(id: 900 + index, user: 300 + index, text: "k\(index)")).status == 200) }
            // Kill a process while its workers wait for the service (the first round's calls take 2 s).
            try waitUntil("the first round reaches the service") { stack.serviceRequests().count >= 8 }
            usleep(700_000)
            let owners = try #require(redis).cli("keys", "{tgq:*}:owner").split(separator: "\n").count
            #expect(owners == 8)
            let victim = stack.poolPIDs[0]
            let victimPartitions = try (0..<8).filter { try #require(redis).cli("get", "{tgq:\($0)}:owner").contains("-\(victim)-") }.count
            let killedAt = monotonicNow()
            kill(victim, SIGKILL)
            let inFlight = stack.serviceRequests().count
            try waitUntil("every update is answered", timeout: 60) { sentTexts(stack).count >= users }
            usleep(1_000_000)

            let texts = sentTexts(stack)
            let answered = Dictionary(grouping: texts) { $0 }
            #expect(texts.count == users, "each update answered exactly once")
            #expect(answered.count == users)
            let calls = stack.serviceRequests().compactMap { $0.request["text"] as? String }
            let repeated = calls.count - Set(calls).count
            #expect(Set(calls).count == users)
            // Only calls cut short by the kill are made again (the service is called at least once).
            #expect(repeated <= victimPartitions)
            // The reclaim time: from the kill to the service seeing a cut-short update again.
            let cutShort = Set(calls.prefix(inFlight))
            let times = stack.serviceRequestTimes()
            let reclaimed = try #require(zip(calls, times).dropFirst(inFlight).first { cutShort.contains($0.0) }?.1)
            print(
                "worker process killed holding \(victimPartitions) of 8 partitions: \(users) updates answered once each, \(repeated) service calls repeated, "
                    + "first reclaimed entry at the service \(String(format: "%.1f", reclaimed - killedAt)) s after the kill")
        }
    }

    @Test func aStopSignalLetsTheEntryInHandFinishAndReleasesThePartitions() throws {
        // A long lease: only a release, not an expiry, clears the owners within the test.
        try withStack(
            processes: 1, threads: 2, redis: (nil, false), standins: true,
            environment: Self.queueEnvironment(partitions: 4, workers: 4, ["QUEUE_LEASE": "60"])
        ) {
            stack, redis in
            let redis = try #require(redis)
            let process = try #require(stack.poolPIDs.first)
            try waitUntil("every partition has a worker") { (try? redis.cli("keys", "{tgq:*}:owner").split(separator: "\n").count) == 4 }
            // Only the main thread, which waits for it, may take a stop signal: taken by another,
            // libfcgi's SIGTERM handler swallows it and the process never drains (while waiting,
            // the main thread's own mask leaves the signal open).
            let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(process)/task").filter { $0 != "\(process)" }
            #expect(threads.count >= 4 + 2 + 1)
            for thread in threads {
                let status = try String(contentsOfFile: "/proc/\(process)/task/\(thread)/status", encoding: .utf8)
                let blocked = status.split(separator: "\n").first { $0.hasPrefix("SigBlk:") }.flatMap {
                    UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16)
                }
                #expect(blocked.map { $0 & (1 << (UInt64(SIGTERM) - 1)) != 0 } == true, "thread \(thread) can take SIGTERM")
            }

            try stack.control(["service": "conversation", "delay_ms": 1500])
            #expect(try stack.post(textUpdate(id: 61, user: 61, text: "in hand")).status == 200)
            try waitUntil("the update reaches the service") { stack.serviceRequests().count == 1 }
            kill(process, SIGTERM)
            try waitUntil("the process exits", timeout: 10) { ChildProcess.isGone(process) }
            #expect(sentTexts(stack) == ["You said: in hand (message 1 of this conversation)"])
            #expect(try redis.cli("keys", "{tgq:*}:owner").isEmpty, "the partitions were released, not left to their lease")
            let waiting = try (0..<4).map { try redis.cli("xlen", "{tgq:\($0)}:stream") }
            #expect(waiting == ["0", "0", "0", "0"], "the entry in hand was acknowledged")
        }
    }

    @Test func aPoisonUpdateIsDeadLetteredAndReplaysOnceTheServiceIsFixed() throws {
        let environment = Self.queueEnvironment(partitions: 2, workers: 2, ["QUEUE_MAX_ATTEMPTS": "2"])
        try withStack(processes: 1, threads: 2, redis: (nil, false), standins: true, environment: environment) { stack, _ in
            try stack.control(["service": "conversation", "status": 500])
            #expect(try stack.post(textUpdate(id: 77, user: 11, text: "poison")).status == 200)
            try waitUntil("the update is dead-lettered", timeout: 20) {
                (try? gatewayctl(stack, "dead-letters").output.contains("1 dead letters")) == true
            }
            let listing = try gatewayctl(stack, "dead-letters").output
            #expect(listing.contains("update 77  message  service_failed after 2 attempts"), "\(listing)")
            #expect(!listing.contains("poison"), "dead letters are listed without their text")
            #expect(stack.serviceRequests().count == 2)
            #expect(sentTexts(stack).count == 1, "the user got the apology once")

            try stack.control(["reset": true])
            let replay = try gatewayctl(stack, "dead-letters", "--replay-all")
            #expect(replay.code == 0, "\(replay.output)")
            try waitUntil("the replayed update is answered", timeout: 20) {
                sentTexts(stack).contains("You said: poison (message 1 of this conversation)")
            }
            #expect(try gatewayctl(stack, "dead-letters").output.contains("0 dead letters"))
            let status = try gatewayctl(stack, "queue-status").output
            #expect(status.contains("total: 0 waiting, 0 dead letters, 0 of 2 partitions without a worker"), "\(status)")
        }
    }

    @Test func theBacklogBoundAnswers503AndLosesNothingOnceItDrains() throws {
        let environment = Self.queueEnvironment(partitions: 1, workers: 1, ["QUEUE_MAX_BACKLOG": "3", "QUEUE_RETRY_AFTER": "1"])
        try withStack(processes: 1, threads: 8, redis: (nil, false), standins: true, environment: environment) { stack, _ in
            try stack.control(["service": "conversation", "delay_ms": 200])
            let updates = (0..<12).map { textUpdate(id: 1_200 + $0, user: 40 + $0, text: "b\($0)") }
            let report = try TelegramSender(stack: stack, connections: 12, retryCapSeconds: 0.3).deliver(updates, deadline: 40)
            #expect(report.undelivered == 0)
            #expect((report.statuses[503] ?? 0) > 0, "the bound was reached: \(report.statuses)")
            #expect(report.statuses.keys.allSatisfy { [200, 503].contains($0) })
            try waitUntil("every update is answered", timeout: 20) { sentTexts(stack).count >= updates.count }
            usleep(300_000)
            #expect(Set(sentTexts(stack)).count == updates.count)
            #expect(sentTexts(stack).count == updates.count)
            #expect(stack.nginxLogs.contains(#""status":503"#), "the 503s are nginx-visible for the operator")
        }
    }

    @Test func aButtonPressBehindTheQueueIsAnsweredAtOnceAndNotTwice() throws {
        let environment = Self.queueEnvironment(partitions: 1, workers: 1, ["QUEUE_CALLBACK_PROMPT": "0"])
        try withStack(processes: 1, threads: 2, redis: (nil, false), standins: true, environment: environment) { stack, _ in
            let press =
                #"{"update_id":61,"callback_query":{"id":"cb-61","from":{"id":5,"is_bot":false,"first_name":"U"},"message":{"message_id":3,"chat":{"id":5,"type":"private"},"date":1},"chat_instance":"1","data":"CONNECT:9"}}"#
            let response = try stack.post(press)
            #expect(response.status == 200)
            #expect(String(decoding: response.body, as: UTF8.self).contains(#""method":"answerCallbackQuery""#))
            try waitUntil("the worker edits the message", timeout: 20) { stack.botAPICalls().contains { $0.method == "editMessageText" } }
            #expect(!stack.botAPICalls().contains { $0.method == "answerCallbackQuery" })
        }
    }

    @Test func oddInputInQueueModeIsAnsweredAndNothingOddIsStored() throws {
        try withStack(processes: 1, threads: 2, redis: (nil, false), standins: true, environment: Self.queueEnvironment(partitions: 2, workers: 2)) {
            stack, _ in
            let odd: [[UInt8]] = [[], Array("{".utf8), [0xff, 0xfe, 0x00], Array(#"{"update_id":"x"}"#.utf8), Array(#"[1,2]"#.utf8)]
            for body in odd { #expect(try stack.post(body).status == 200) }
            #expect(try stack.post(Array("{}".utf8), secret: "wrong").status == 403)
            let status = try gatewayctl(stack, "queue-status").output
            #expect(status.contains("total: 0 waiting, 0 dead letters"), "\(status)")
            #expect(try stack.post(textUpdate(id: 1, user: 2, text: "still there")).status == 200)
            try waitUntil("the pool still processes", timeout: 20) { !sentTexts(stack).isEmpty }
        }
    }
}
