import Foundation
import GatewayCore
import GatewayHTTP
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The pool's real `/metrics` after traffic of every kind, checked by Prometheus' own
/// `promtool check metrics` (Debian's prometheus package) and by the exposition format's rules
/// that the linter does not check.
@Suite(.serialized) struct MetricsExpositionTests {
    /// promtool's exit code and complaints for an exposition.
    static func promtool(_ text: String, in directory: URL) throws -> (code: Int32, output: String) {
        let file = directory.appending(path: "scrape-\(UUID().uuidString.prefix(6)).txt")
        try text.write(to: file, atomically: false, encoding: .utf8)
        return try ChildProcess.runCapturing("/bin/sh", ["-c", "exec promtool check metrics < \"$1\"", "promtool", file.path])
    }

    /// The sum of a family's series whose line holds every one of `labels`.
    static func total(_ text: String, _ name: String, _ labels: [String] = []) -> Double {
        text.split(separator: "\n").filter { line in
            (line.hasPrefix(name + " ") || line.hasPrefix(name + "{")) && labels.allSatisfy { line.contains($0) }
        }.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
    }

    /// Every family's lines are together, after one HELP and one TYPE; every histogram's
    /// buckets rise in `le` to `+Inf`, with counts that never fall.
    static func formatProblems(_ text: String) -> [String] {
        var problems: [String] = []
        var seen = Set<String>()
        var current = ""
        var bounds: [String: [(Double, Double)]] = [:]
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") {
                let family = String(line.split(separator: " ")[2])
                if !seen.insert(family).inserted { problems.append("\(family) appears twice") }
                current = family
                continue
            }
            if line.hasPrefix("#") { continue }
            let series = String(line.split(separator: " ")[0])
            let name = String(series.prefix { $0 != "{" })
            guard name == current || name.hasPrefix(current + "_") else {
                problems.append("\(name) outside its family (after \(current))")
                continue
            }
            let value = Double(line.split(separator: " ").last ?? "") ?? .nan
            let labels = series.drop { $0 != "{" }
            if name.hasSuffix("_bucket"), let le = labels.firstRange(of: "le=\"") {
                let bound = labels[le.upperBound...].prefix { $0 != "\"" }
                let others = labels.replacingOccurrences(of: "le=\"\(bound)\"", with: "")
                bounds[current + others, default: []].append((bound == "+Inf" ? .infinity : Double(bound) ?? .nan, value))
            }
        }
        for (histogram, buckets) in bounds {
            if buckets.map(\.0) != buckets.map(\.0).sorted() { problems.append("\(histogram): le out of order") }
            if buckets.last?.0 != .infinity { problems.append("\(histogram): +Inf is not last") }
            if buckets.map(\.1) != buckets.map(\.1).sorted() { problems.append("\(histogram): cumulative counts fall") }
        }
        if bounds.isEmpty { problems.append("no histogram at all") }
        return problems
    }

    @Test func thePoolsExpositionPassesPromtoolAfterTrafficOfEveryKind() throws {
        // Every request counts as slow, so the slow-request counter shows.
        try withStack(
            mode: .supervisor, processes: 2, threads: 4, redis: (password: nil, useSocket: true), standins: true,
            environment: ["SLOW_REQUEST": "0.001", "RATE_LIMIT_REQUESTS": "100"]
        ) { stack, redis in
            let redis = try #require(redis)
            // A service's answer, the gateway's own answer, a button, a group message, an edit,
            // bodies that are not updates, a wrong secret, and a send through the send API.
            #expect(try stack.post(DownstreamThroughNginxTests.text(1, "/start")).status == 200)
            #expect(try stack.post(DownstreamThroughNginxTests.text(2, "/nosuchcommand")).status == 200)
            #expect(try stack.post(DownstreamThroughNginxTests.callback(3, data: "noop")).status == 200)
            #expect(try stack.post(textUpdate(id: 4, user: 5002, text: "just words")).status == 200)
            #expect(
                try stack.post("{\"update_id\":5,\"edited_message\":{\"message_id\":1,\"date\":1,\"chat\":{\"id\":-100,\"type\":\"group\"}}}").status
                    == 200)
            #expect(try stack.post("{not json").status == 200)
            #expect(try stack.post("[]").status == 200)
            #expect(try stack.post("{}", secret: "wrong").status == 403)
            #expect(try stack.send(OutboundThroughNginxTests.body([2_100_001])).status == 202)
            try waitUntil("the send is delivered and every histogram has counted", timeout: 15) {
                guard let text = try? stack.metrics() else { return false }
                // Seven webhook requests reached the pool (nginx refused the wrong secret).
                return Self.total(text, "telegram_gateway_updates_total") == 7
                    && Self.total(text, "telegram_gateway_outbound_delivered_total") == 1
                    && Self.total(text, "telegram_gateway_service_seconds_count") >= 1
                    && Self.total(text, "telegram_gateway_bot_api_seconds_count") >= 1
                    && Self.total(text, "telegram_gateway_redis_seconds_count") >= 1
            }
            let withRedis = try stack.metrics()
            for family in [
                "telegram_gateway_webhook_seconds_bucket", "telegram_gateway_slow_requests_total", "telegram_gateway_queue_backlog_entries",
                "telegram_gateway_queue_oldest_age_seconds", "telegram_gateway_queue_dead_letters", "telegram_gateway_circuit_open_processes",
                "telegram_gateway_build_info", "telegram_gateway_outbound_backlog_recipients", "telegram_gateway_threads",
                "telegram_gateway_processes",
            ] {
                #expect(withRedis.contains("\n\(family)"), "\(family) is missing")
            }
            #expect(withRedis.contains(#"telegram_gateway_build_info{version="\#(GatewayVersion.current)"} 1"#))
            let check = try Self.promtool(withRedis, in: stack.directory)
            #expect(check.code == 0 && check.output.isEmpty, "promtool: \(check.output)")
            #expect(Self.formatProblems(withRedis) == [])

            // Redis gone: updates are handled fail-open and counted; the store's gauges are left
            // out, the rest still passes.
            let updatesBefore = 7.0
            redis.kill()
            #expect(try stack.post(DownstreamThroughNginxTests.text(10, user: 5003, "/nosuchcommand")).status == 200)
            // Each process writes its figures four times a second.
            try waitUntil("the fail-open update is counted") {
                ((try? stack.metrics()).map { Self.total($0, "telegram_gateway_fail_open_total") } ?? 0) >= 1
            }
            let withoutRedis = try stack.metrics()
            #expect(Self.total(withoutRedis, "telegram_gateway_updates_total") == updatesBefore + 1)
            #expect(!withoutRedis.contains("telegram_gateway_queue_backlog_entries "))
            let second = try Self.promtool(withoutRedis, in: stack.directory)
            #expect(second.code == 0 && second.output.isEmpty, "promtool: \(second.output)")

            // A child killed: the supervisor restarts it, its counters are folded, nothing goes back.
            let child = try #require(LocalStack.children(of: stack.poolPIDs[0]).first)
            kill(child, SIGKILL)
            try waitUntil("the restart is counted", timeout: 10) {
                ((try? stack.metrics()).map { Self.total($0, "telegram_gateway_child_restarts_total") } ?? 0) == 1
            }
            let afterRestart = try stack.metrics()
            #expect(Self.total(afterRestart, "telegram_gateway_updates_total") == updatesBefore + 1)
            let third = try Self.promtool(afterRestart, in: stack.directory)
            #expect(third.code == 0 && third.output.isEmpty, "promtool: \(third.output)")
        }
    }
}
