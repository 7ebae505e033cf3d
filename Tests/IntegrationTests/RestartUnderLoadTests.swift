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
            let output = stack.directory.appending(path: "loadtest.out").path
            let loadtest = try ChildProcess.spawn(
                "/bin/bash", [LocalStack.packageRoot.appending(path: "scripts/loadtest").path, "-d", "6", "-c", "16", stack.url],
                outputPath: output, environment: ["LOADTEST_SECRET": LocalStack.secret])
            for _ in 0..<3 {
                usleep(1_500_000)
                kill(supervisor, SIGHUP)
            }
            ChildProcess.waitForExit(loadtest)
            let summary = try String(contentsOfFile: output, encoding: .utf8)
            #expect(summary.contains("loadtest:"), "\(summary)")
            #expect(summary.contains(" non2xx=0 "), "\(summary)")
            #expect(summary.contains(" socket_errors=0 "), "\(summary)")
            #expect(stack.gatewayLog.components(separatedBy: "child retired").count - 1 == 6)
            print("restart under load: \(summary.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }
}

/// The pool's PHP-FPM-like guards, under the supervisor.
@Suite(.serialized) struct PoolGuardTests {
    @Test func aChildPastMaxRequestsIsReplacedWithoutAFailedRequest() throws {
        try withStack(mode: .supervisor, processes: 2, threads: 4, redis: (password: nil, useSocket: true), environment: ["MAX_REQUESTS": "2000"]) { stack, _ in
            let output = stack.directory.appending(path: "loadtest.out").path
            let loadtest = try ChildProcess.spawn(
                "/bin/bash", [LocalStack.packageRoot.appending(path: "scripts/loadtest").path, "-d", "4", "-c", "16", stack.url],
                outputPath: output, environment: ["LOADTEST_SECRET": LocalStack.secret])
            ChildProcess.waitForExit(loadtest)
            let summary = try String(contentsOfFile: output, encoding: .utf8)
            #expect(summary.contains(" non2xx=0 "), "\(summary)")
            #expect(summary.contains(" socket_errors=0 "), "\(summary)")
            #expect(stack.gatewayLog.contains("child recycled; replacing it"))
            #expect(stack.gatewayLog.contains(#""reason":"max requests served""#))
        }
    }

    @Test func aRequestPastItsDeadlineGetsItsChildReplacedAndTheOthersKeepAnswering() throws {
        let environment = ["REQUEST_TIMEOUT": "1", "CONVERSATION_TIMEOUT": "10", "RATE_LIMIT_REQUESTS": "100"]
        try withStack(mode: .supervisor, processes: 2, threads: 2, redis: (password: nil, useSocket: true), standins: true, environment: environment) { stack, _ in
            let supervisor = try #require(stack.poolPIDs.first)
            try waitUntil("two children run") { LocalStack.children(of: supervisor).count == 2 }
            let before = Set(LocalStack.children(of: supervisor))
            try stack.control(["service": "conversation", "delay_ms": 5000])
            let stuck = Mutex<Int?>(nil)
            let url = stack.url, certificate = stack.directory.appending(path: "tls/cert.pem").path
            let poster = Thread {
                let client = try? HTTPClient(caFile: certificate)
                let request = HTTPRequest(
                    method: "POST", url: url, headers: [("X-Telegram-Bot-Api-Secret-Token", LocalStack.secret)],
                    body: Array(DownstreamThroughNginxTests.text(1, user: 8001, "slow").utf8), timeoutSeconds: 30)
                stuck.withLock { $0 = (try? client?.send(request))??.status ?? -1 }
            }
            poster.start()
            // While one request hangs, the pool keeps answering others.
            for id in 2...6 {
                #expect(try stack.post(RedisStateThroughNginxTests.command(id, user: Int64(8100 + id))).status == 200)
            }
            try waitUntil("the stuck request ends", timeout: 10) { stuck.withLock { $0 } != nil }
            #expect(stuck.withLock { $0 } == 502, "its process was replaced")
            try waitUntil("the supervisor replaced the child") {
                let now = Set(LocalStack.children(of: supervisor).filter { !ChildProcess.isGone($0) })
                return now.count == 2 && now != before
            }
            #expect(stack.gatewayLog.contains("request deadline exceeded; replacing this process"))
            #expect(try stack.post(RedisStateThroughNginxTests.command(9, user: 8200)).status == 200)
        }
    }
}
