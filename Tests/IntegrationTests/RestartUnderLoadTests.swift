import Foundation
import GatewayHTTP
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The documented restart: SIGHUP to the supervisor replaces every child while nginx keeps
/// sending; a running load test must see nothing but 200.
@Suite(.serialized) struct RestartUnderLoadTests {
    @Test func reloadingThePoolUnderLoadLosesNoRequest() throws {
        try withStack(mode: .supervisor, processes: 2, threads: 4, redis: (password: nil, useSocket: true)) { stack, _ in
            let supervisor = try #require(stack.poolPIDs.first)
            let loadtest = try stack.startLoadtest(seconds: 6)
            for _ in 0..<3 {
                usleep(1_500_000)
                kill(supervisor, SIGHUP)
            }
            let summary = try stack.finishLoadtest(loadtest)
            // The last reload's old children retire once their requests are done: wait for them.
            try? waitUntil("every old child retires", timeout: 10) {
                stack.gatewayLog.components(separatedBy: "child retired").count - 1 >= 6
            }
            // What the pool and nginx said besides answering, should anything fail.
            let notes =
                stack.gatewayLog.split(separator: "\n").filter { !$0.contains(#""level":"info""#) }.prefix(20).joined(separator: "\n")
                + "\n"
                + stack.nginxLogs.split(separator: "\n").filter { !$0.contains(#""status":200"#) }.prefix(20)
                .joined(separator: "\n")
            #expect(summary.contains("loadtest:"), "\(summary)")
            #expect(summary.contains(" non2xx=0 "), "\(summary)\n\(notes)")
            #expect(summary.contains(" socket_errors=0 "), "\(summary)\n\(notes)")
            #expect(stack.gatewayLog.components(separatedBy: "child retired").count - 1 == 6, "\(notes)")
            print("restart under load: \(summary.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }
}

/// The pool's PHP-FPM-like guards, under the supervisor.
@Suite(.serialized) struct PoolGuardTests {
    @Test func aChildPastMaxRequestsIsReplacedWithoutAFailedRequest() throws {
        try withStack(mode: .supervisor, processes: 2, threads: 4, redis: (password: nil, useSocket: true), environment: ["MAX_REQUESTS": "2000"]) {
            stack, _ in
            let summary = try stack.finishLoadtest(try stack.startLoadtest(seconds: 4))
            #expect(summary.contains(" non2xx=0 "), "\(summary)")
            #expect(summary.contains(" socket_errors=0 "), "\(summary)")
            #expect(stack.gatewayLog.contains("child recycled; replacing it"))
            #expect(stack.gatewayLog.contains(#""reason":"max requests served""#))
        }
    }

    @Test func aRequestStuckPastRequestTimeoutGetsItsChildReplacedAndTheOthersKeepAnswering() throws {
        // Every wait of an update ends by its deadline (1 s here), so only what the deadline
        // cannot reach sticks: a client on the socket that stops sending mid-body.
        let timeouts = ["CONVERSATION_TIMEOUT", "USER_PROFILE_TIMEOUT", "MATCHING_TIMEOUT", "NOTIFICATION_TIMEOUT"].map { ($0, "1") }
        let environment = Dictionary(
            uniqueKeysWithValues: timeouts + [("UPDATE_DEADLINE", "1"), ("REQUEST_TIMEOUT", "6"), ("RATE_LIMIT_REQUESTS", "100")])
        try withStack(mode: .supervisor, processes: 2, threads: 2, redis: (password: nil, useSocket: true), standins: true, environment: environment)
        { stack, _ in
            let supervisor = try #require(stack.poolPIDs.first)
            try waitUntil("two children run") { LocalStack.children(of: supervisor).count == 2 }
            let before = Set(LocalStack.children(of: supervisor))
            let body = Array(DownstreamThroughNginxTests.text(1, user: 8001, "stalled").utf8)
            let stalled = try FastCGIClient.stall(
                socketPath: stack.socketPath,
                parameters: [
                    ("REQUEST_METHOD", "POST"), ("DOCUMENT_URI", "/webhook/telegram"), ("CONTENT_LENGTH", "\(body.count)"),
                    ("HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN", LocalStack.secret),
                ], body: body)
            defer { close(stalled) }
            // While one request is stuck, the pool keeps answering others.
            for id in 2...6 {
                #expect(try stack.post(RedisStateThroughNginxTests.command(id, user: Int64(8100 + id))).status == 200)
            }
            try waitUntil("the supervisor replaced the child", timeout: 15) {
                let now = Set(LocalStack.children(of: supervisor).filter { !ChildProcess.isGone($0) })
                return now.count == 2 && now != before
            }
            #expect(stack.gatewayLog.contains("request stuck past REQUEST_TIMEOUT; replacing this process"))
            #expect(try stack.post(RedisStateThroughNginxTests.command(9, user: 8200)).status == 200)
        }
    }
}

/// /telegram-gateway/metrics and /health through nginx, for the whole pool.
@Suite(.serialized) struct MetricsAndHealthTests {
    @Test func metricsAreSummedOverEveryProcessOfThePool() throws {
        // One thread a process: 40 requests at once cannot all go to one process.
        try withStack(processes: 2, threads: 1, redis: (password: nil, useSocket: true)) { stack, _ in
            let responses = RedisStateThroughNginxTests.postTogether(
                (1...40).map { RedisStateThroughNginxTests.command($0, user: Int64(9000 + $0)) }, to: stack)
            #expect(responses.allSatisfy { $0?.status == 200 })
            // Both processes served some (nginx spreads connections), and each writes its own file.
            try waitUntil("both processes wrote metrics") {
                ((try? FileManager.default.contentsOfDirectory(atPath: stack.directory.appending(path: "metrics").path)) ?? [])
                    .filter { $0.hasSuffix(".metrics") }.count == 2
            }
            var text = ""
            try waitUntil("the 40 updates are counted") {
                text = (try? stack.metrics()) ?? ""
                return MetricsExpositionTests.total(text, "telegram_gateway_updates_total", [#"outcome="replied""#, #"route="unknown_command""#])
                    == 40
            }
            #expect(text.contains("# TYPE telegram_gateway_updates_total counter"))
            #expect(text.contains("telegram_gateway_in_flight_requests"))
            // The sum is over processes: the log shows the updates were served by both.
            let pids = Set(
                stack.gatewayLog.split(separator: "\n").filter { $0.contains(#""outcome":"replied""#) }.compactMap { line -> Substring? in
                    guard let range = line.firstRange(of: #""pid":"#) else { return nil }
                    return line[range.upperBound...].prefix { $0.isNumber }
                })
            #expect(pids.count == 2, "served by \(pids.count) process(es)")
        }
    }

    @Test func healthIsDegradedWhileRedisIsDownAndOkWhenItReturns() throws {
        try withStack(redis: (password: nil, useSocket: true)) { stack, redis in
            let redis = try #require(redis)
            #expect(try stack.get("/telegram-gateway/health").body.contains(#""status":"ok""#))
            redis.kill()
            try waitUntil("health says degraded") { (try? stack.get("/telegram-gateway/health").body.contains(#""status":"degraded""#)) == true }
            #expect(try stack.get("/telegram-gateway/health").body.contains(#""redis":"unavailable""#))
            try redis.start()
            try waitUntil("health says ok again", timeout: 15) {
                (try? stack.get("/telegram-gateway/health").body.contains(#""status":"ok""#)) == true
            }
        }
    }

    @Test func statusShowsEveryProcessItsThreadsRequestsAndRestarts() throws {
        try withStack(mode: .supervisor, processes: 2, threads: 3) { stack, _ in
            let supervisor = try #require(stack.poolPIDs.first)
            for id in 1...10 { _ = try stack.post(RedisStateThroughNginxTests.command(id, user: Int64(9500 + id))) }
            func status() throws -> [String: Any] {
                try #require(try JSONSerialization.jsonObject(with: Data(stack.get("/telegram-gateway/status").body.utf8)) as? [String: Any])
            }
            try waitUntil("both processes report 10 accepted requests") {
                guard let status = try? status(), let processes = status["processes"] as? [[String: Any]] else { return false }
                return processes.count == 2 && (status["accepted_requests"] as? Int ?? 0) >= 10
            }
            let processes = try #require(try status()["processes"] as? [[String: Any]])
            #expect(processes.allSatisfy { $0["threads"] as? Int == 3 })
            #expect(processes.allSatisfy { ($0["busy_threads"] as? Int ?? -1) + ($0["idle_threads"] as? Int ?? -1) == 3 })
            #expect(try status()["restarts"] as? Int == 0)

            let victim = try #require(LocalStack.children(of: supervisor).first)
            kill(victim, SIGKILL)
            try waitUntil("the restart is counted and two processes run again") {
                guard let status = try? status() else { return false }
                return status["restarts"] as? Int == 1 && (status["processes"] as? [[String: Any]])?.count == 2
            }
        }
    }
}
