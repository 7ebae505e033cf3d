import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The redelivery simulator: Telegram-like delivery through nginx (40 connections, every update
/// redelivered until it gets 200) while faults are injected (responders killed with SIGKILL,
/// Redis killed and restarted, a service made slow), then invariants checked from what the
/// stand-ins recorded, each printed as `N passed, M failed`.
@Suite(.serialized) struct RedeliverySimulatorTests {
    struct Invariants {
        var lines: [String] = []
        var failed = 0

        mutating func check(_ name: String, passed: Int, failed: Int) {
            lines.append("\(name): \(passed) passed, \(failed) failed")
            self.failed += failed
        }
    }

    private func simulate(mode: String, environment: [String: String]) throws {
        let users = 120
        let perUser = 10
        let updates = (0..<(users * perUser)).map { index in
            textUpdate(id: 70_000 + index, user: 5_000 + index % users, text: "sim-\(index)")
        }
        // Neither mode may lose what it acknowledged: queue mode every update, sync mode a busy
        // user's update handed to the stream and the kept rest of an answer. Redis is killed
        // here, so it fsyncs every write (DEPLOY.md asks the same persistence of both modes).
        let redis = try RedisServer(appendfsync: "always")
        defer { try? redis.stop() }
        var extra = redis.gatewayEnvironment(useSocket: false)
        extra.merge(environment) { _, new in new }
        extra.merge(["WEBHOOK_REPLY": "off", "OUTGOING_PER_SECOND": "0", "RATE_LIMIT_REQUESTS": "100", "REDIS_COMMAND_TIMEOUT": "0.2"]) { old, _ in
            old
        }
        let stack = try LocalStack(mode: .supervisor, processes: 2, threads: 8, standins: true, extraEnvironment: extra)
        defer { try? stack.stop() }
        try stack.control(["service": "conversation", "delay_ms": 100])

        // The faults, on their own thread, while the updates are delivered (the thread only
        // signals processes and the stand-ins; both objects outlive it).
        let shared = UncheckedSendable((stack, redis))
        let faults = Thread {
            let (stack, redis) = shared.value
            usleep(700_000)
            if let child = LocalStack.children(of: stack.poolPIDs[0]).first { kill(child, SIGKILL) }
            usleep(700_000)
            redis.kill()
            usleep(500_000)
            try? redis.start()
            usleep(300_000)
            try? stack.control(["service": "conversation", "delay_ms": 1500])
            usleep(1_500_000)
            try? stack.control(["service": "conversation", "delay_ms": 100])
            if let child = LocalStack.children(of: stack.poolPIDs[0]).last { kill(child, SIGKILL) }
        }
        faults.start()
        let report = try TelegramSender(stack: stack, connections: 40, timeoutSeconds: 10, retryCapSeconds: 0.5).deliver(updates, deadline: 90)
        usleep(4_200_000 - UInt32(min(4_200_000, Int(report.seconds * 1_000_000))))  // let the faults finish
        // A sanitized responder (scripts/sanitize) is several times slower.
        let patience: Double = ProcessInfo.processInfo.environment["GATEWAY_SANITIZED"] == nil ? 60 : 300
        let answering = monotonicNow()
        try waitUntil("every update is answered", timeout: patience) {
            usleep(200_000)
            return Set(stack.botAPICalls().compactMap { ($0.params["text"] as? String)?.split(separator: " ").dropFirst(2).first }).count
                >= updates.count
        }

        let texts = (0..<updates.count).map { "sim-\($0)" }
        let called = stack.serviceRequests().compactMap { $0.request["text"] as? String }
        let answers = stack.botAPICalls().filter { $0.method == "sendMessage" }.compactMap { $0.params["text"] as? String }
        let answered = answers.compactMap { $0.split(separator: " ").dropFirst(2).first.map(String.init) }
        let answeredUsers = Set(stack.botAPICalls().filter { $0.method == "sendMessage" }.compactMap { $0.params["chat_id"] as? Int })
        let calls = Dictionary(grouping: called) { $0 }.mapValues(\.count)
        let sends = Dictionary(grouping: answered) { $0 }.mapValues(\.count)

        var invariants = Invariants()
        invariants.check("acknowledged with 200", passed: updates.count - report.undelivered, failed: report.undelivered)
        let missed = texts.filter { calls[$0] == nil }.count
        invariants.check("service called", passed: texts.count - missed, failed: missed)
        let unanswered = texts.filter { sends[$0] == nil }.count
        invariants.check("answered", passed: texts.count - unanswered, failed: unanswered)
        invariants.check("every user answered", passed: answeredUsers.count, failed: users - answeredUsers.count)
        let repeatedCalls = texts.filter { (calls[$0] ?? 0) > 1 }.count
        let repeatedAnswers = texts.filter { (sends[$0] ?? 0) > 1 }.count
        print(
            "simulator (\(mode)): \(updates.count) updates, answers by status \(report.statuses.sorted { $0.key < $1.key }), delivered in "
                + "\(Int(report.seconds)) s, the last answer \(String(format: "%.1f", monotonicNow() - answering)) s after the faults ended")
        for line in invariants.lines { print("  \(line)") }
        print(
            "  processed once: \(texts.count - repeatedCalls) passed, \(repeatedCalls) service calls and \(repeatedAnswers) answers repeated (documented: cut short by a kill, or while Redis was down)"
        )
        #expect(invariants.failed == 0, "\(invariants.lines)")
        // Each fault can cut short at most one request per connection.
        #expect(repeatedCalls <= 3 * 40)
    }

    @Test func syncModeLosesNothingUnderFaults() throws {
        try simulate(mode: "sync", environment: [:])
    }

    @Test func queueModeLosesNothingUnderFaults() throws {
        try simulate(mode: "queue", environment: QueueModeThroughNginxTests.queueEnvironment(partitions: 8, workers: 8))
    }
}

/// Hands a test's non-Sendable objects to a helper thread that the test outlives.
final class UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
