import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Day-two operations on the real pool: a reload that cannot break it, and log rotation with
/// the shipped logrotate file.
@Suite(.serialized) struct OperationsTests {
    /// The `requests=N` figure of a loadtest summary.
    static func requests(_ summary: String) -> Int? {
        summary.split(separator: " ").first { $0.hasPrefix("requests=") }.flatMap { Int($0.dropFirst("requests=".count)) }
    }

    @Test func aReloadWithABrokenConfigurationKeepsTheOldChildrenServing() throws {
        try withStack(mode: .supervisor, processes: 2, threads: 4, redis: (password: nil, useSocket: true)) { stack, _ in
            let supervisor = try #require(stack.poolPIDs.first)
            try waitUntil("two children run") { LocalStack.children(of: supervisor).count == 2 }
            let serving = Set(LocalStack.children(of: supervisor))
            let envFile = stack.directory.appending(path: ".env")
            let good = try String(contentsOf: envFile, encoding: .utf8)

            let loadtest = try stack.startLoadtest(seconds: 4)
            sleep(1)
            // A typo an operator could make, saved before `systemctl reload`.
            try (good + "GATEWAY_THREADS=eight\n").write(to: envFile, atomically: true, encoding: .utf8)
            kill(supervisor, SIGHUP)
            try waitUntil("the refusal is logged") { stack.gatewayLog.contains("reload refused") }
            let summary = try stack.finishLoadtest(loadtest)
            print("reload with a broken configuration under load: \(summary.trimmingCharacters(in: .whitespacesAndNewlines))")
            #expect(summary.contains(" non2xx=0 "), "\(summary)")
            #expect(summary.contains(" socket_errors=0 "), "\(summary)")
            #expect((Self.requests(summary) ?? 0) > 100, "\(summary)")
            #expect(Set(LocalStack.children(of: supervisor)) == serving, "the old children still serve, none was retired")
            #expect(!stack.gatewayLog.contains("child retired"))
            let refusal = try #require(stack.gatewayLog.split(separator: "\n").first { $0.contains("reload refused") })
            #expect(refusal.contains("GATEWAY_THREADS"), "the log says what is wrong: \(refusal)")
            let metrics = try stack.metrics()
            #expect(metrics.contains("\ntelegram_gateway_last_reload_failed 1\n"))

            // Fixed: the next reload replaces the children.
            try good.write(to: envFile, atomically: true, encoding: .utf8)
            kill(supervisor, SIGHUP)
            try waitUntil("the old children are retired", timeout: 15) {
                stack.gatewayLog.components(separatedBy: "child retired").count - 1 == 2
            }
            let now = Set(LocalStack.children(of: supervisor).filter { !ChildProcess.isGone($0) })
            #expect(now.count == 2 && now.isDisjoint(with: serving))
            #expect(try stack.post(RedisStateThroughNginxTests.command(1, user: 7001)).status == 200)
            try waitUntil("the metric clears") {
                (try? stack.metrics())?.contains("\ntelegram_gateway_last_reload_failed 0\n") == true
            }
        }
    }

    @Test func logrotateWithTheShippedFileLosesNoLineAndEveryProcessWritesTheNewFile() throws {
        try withStack(mode: .supervisor, processes: 2, threads: 4, redis: (password: nil, useSocket: true)) { stack, _ in
            let supervisor = try #require(stack.poolPIDs.first)
            try waitUntil("two children run") { LocalStack.children(of: supervisor).count == 2 }
            let log = stack.directory.appending(path: "gateway.log").path
            // The shipped file with this stack's log and supervisor (systemd, the service user
            // and /var/log are the host's).
            var shipped = try String(contentsOf: LocalStack.packageRoot.appending(path: "scripts/logrotate/telegram-gateway"), encoding: .utf8)
            let replacements = [
                ("/var/log/telegram-gateway/*.log", log),
                ("create 0640 telegram-gateway telegram-gateway", "create 0640"),
                ("systemctl kill --signal=USR1 telegram-gateway.service 2>/dev/null || true", "kill -USR1 \(supervisor)"),
                ("systemctl kill --signal=USR1 telegram-gateway-spawn-fcgi.service 2>/dev/null || true", ""),
            ]
            for (from, to) in replacements {
                #expect(shipped.contains(from), "the shipped file changed: \(from)")
                shipped = shipped.replacing(from, with: to)
            }
            let conf = stack.directory.appending(path: "logrotate.conf")
            try shipped.write(to: conf, atomically: false, encoding: .utf8)
            chmod(conf.path, 0o644)

            let loadtest = try stack.startLoadtest(seconds: 3)
            sleep(1)
            let rotated = try ChildProcess.runCapturing(
                "/usr/sbin/logrotate", ["-f", "-s", stack.directory.appending(path: "logrotate.state").path, conf.path])
            #expect(rotated.code == 0, "\(rotated.output)")
            let summary = try stack.finishLoadtest(loadtest)
            #expect(summary.contains(" non2xx=0 "), "\(summary)")

            // Every process says so in the new file: the supervisor and both children.
            try waitUntil("every process reopened") {
                ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").components(separatedBy: "log file reopened").count - 1 == 3
            }
            // Updates after the rotation go to the new file only.
            for id in 1...20 { #expect(try stack.post(RedisStateThroughNginxTests.command(987_650_000 + id, user: 7100)).status == 200) }
            // One line per update handled ("update handled", or "slow request"): the lines in
            // both files are as many as the updates the pool counted.
            let handled = { (text: String) in
                text.components(separatedBy: "\"update handled\"").count + text.components(separatedBy: "\"slow request\"").count - 2
            }
            var lines = (old: 0, new: 0)
            var counted = 0.0
            try waitUntil("the log lines match the updates counted", timeout: 5) {
                lines = (
                    handled((try? String(contentsOfFile: log + ".1", encoding: .utf8)) ?? ""),
                    handled((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
                )
                counted = (try? stack.metrics()).map { MetricsExpositionTests.total($0, "telegram_gateway_updates_total") } ?? 0
                return Double(lines.old + lines.new) == counted
            }
            print("logrotate under load: \(lines.old) lines in the renamed file, \(lines.new) in the new one, \(Int(counted)) updates counted")
            #expect(lines.old > 100 && lines.new >= 20, "both files hold lines: \(lines)")
            let old = try String(contentsOfFile: log + ".1", encoding: .utf8)
            #expect(!old.contains("98765000"), "the updates sent after the reopen are in the new file only")
            let new = try String(contentsOfFile: log, encoding: .utf8)
            #expect(old.hasSuffix("\n") && new.hasSuffix("\n"), "no line cut in two")
        }
    }
}
