import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Faults around the pool: a responder killed under load, a log disk that is full, a body that
/// stops arriving, and the Telegram address allow-list switched on.
@Suite(.serialized) struct FaultTests {
    @Test func aResponderKilledUnderLoadCostsAtMostItsRequestsInFlightAndIsReplacedQuickly() throws {
        try withStack(mode: .supervisor, processes: 2, threads: 4) { stack, _ in
            let supervisor = try #require(stack.poolPIDs.first)
            let loadtest = try stack.startLoadtest(seconds: 6)
            usleep(2_000_000)
            let victim = try #require(LocalStack.children(of: supervisor).first)
            let killedAt = monotonicNow()
            kill(victim, SIGKILL)
            try waitUntil("the supervisor replaces the child") {
                let children = LocalStack.children(of: supervisor)
                return children.count == 2 && !children.contains(victim)
            }
            let replaced = monotonicNow() - killedAt
            let summary = try stack.finishLoadtest(loadtest)
            let badGateway = stack.nginxLogs.split(separator: "\n").filter { $0.contains(#""status":502"#) }.count
            print(
                "responder killed under load: \(badGateway) requests got 502, replaced in \(Int(replaced * 1000)) ms; \(summary.split(separator: "\n").last ?? "")"
            )
            // Only the killed child's requests in flight fail (Telegram redelivers them), at most one per thread.
            #expect(badGateway <= 4)
            #expect(replaced < 3)
            #expect(try stack.post(textUpdate(id: 9, user: 9, text: "/x")).status == 200)
        }
    }

    @Test func aFullLogDiskDoesNotStopTheAnswers() throws {
        try withStack(environment: ["LOG_FILE": "/dev/full", "LOG_LEVEL": "DEBUG"]) { stack, _ in
            for index in 0..<20 {
                let response = try stack.post(textUpdate(id: 100 + index, user: 7, text: "/nosuchcommand"))
                #expect(response.status == 200)
                #expect(String(decoding: response.body, as: UTF8.self).contains("sendMessage"))
            }
            #expect(try stack.post(Array("{".utf8)).status == 200)
        }
    }

    @Test func aBodyThatStopsArrivingIsCutOffByNginxAndNeverReachesThePool() throws {
        try withStack { stack, _ in
            // Promise 1000 bytes, send 13, then nothing for 12 s: nginx's client_body_timeout
            // (10 s) ends the request, logged as 408; the pool never sees it.
            _ = try ChildProcess.run(
                "/bin/bash",
                [
                    "-c",
                    """
                    { printf 'POST /webhook/telegram HTTP/1.1\\r\\nHost: gateway\\r\\nX-Telegram-Bot-Api-Secret-Token: %s\\r\\nContent-Type: application/json\\r\\nContent-Length: 1000\\r\\n\\r\\n{"update_id":' '\(LocalStack.secret)'; sleep 12; } \\
                      | openssl s_client -quiet -connect 127.0.0.1:\(stack.port) >/dev/null 2>&1 || true
                    """,
                ])
            let cutOff = stack.nginxLogs.split(separator: "\n").filter { $0.contains(#""status":408"#) }
            print("stalled body: \(cutOff.count) request cut off by nginx: \(cutOff.first ?? "")")
            #expect(cutOff.count == 1)
            #expect(!stack.gatewayLog.contains("undecodable update"), "the partial body never reached a responder")
            #expect(try stack.post(textUpdate(id: 1, user: 1, text: "/x")).status == 200)
        }
    }

    @Test func theAllowListRefusesAddressesOutsideTelegramsRanges() throws {
        try withStack { stack, _ in
            let nginx = stack.directory.appending(path: "nginx")
            let link = nginx.appending(path: "location.d/telegram-gateway-allowlist.conf").path
            try FileManager.default.createSymbolicLink(
                atPath: link, withDestinationPath: nginx.appending(path: "snippets/telegram-gateway-allowlist.conf").path)
            let master = try #require(
                pid_t(try String(contentsOf: nginx.appending(path: "nginx.pid"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
            kill(master, SIGHUP)
            // Loopback is not one of Telegram's ranges: refused by nginx, the pool never sees it.
            try waitUntil("nginx applies the allow-list") { (try? stack.post(textUpdate(id: 5, user: 5, text: "/x")).status) == 403 }
            let refused = try stack.post(textUpdate(id: 55_555, user: 5, text: "/x"))
            #expect(refused.status == 403)
            #expect(!stack.gatewayLog.contains("55555"), "a refused request never reaches the pool")
            try FileManager.default.removeItem(atPath: link)
            kill(master, SIGHUP)
            try waitUntil("nginx drops the allow-list") { (try? stack.post(textUpdate(id: 6, user: 6, text: "/x")).status) == 200 }
        }
    }
}
