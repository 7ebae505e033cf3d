import Foundation
import GatewayHTTP
import Synchronization

/// Posts updates through nginx the way Telegram does: up to `connections` requests at once, and
/// any update that does not get 200 is delivered again later (after its Retry-After, capped),
/// until `deadline` seconds have passed. Bounded in time and count; loopback only.
struct TelegramSender {
    struct Report {
        /// How many answers had each status (0: no answer within the timeout).
        var statuses: [Int: Int] = [:]
        /// Milliseconds to each 200, sorted.
        var acknowledged: [Double] = []
        /// Updates that never got 200 before the deadline.
        var undelivered = 0
        var seconds: Double = 0

        func percentile(_ fraction: Double) -> Double {
            guard !acknowledged.isEmpty else { return 0 }
            return acknowledged[min(acknowledged.count - 1, Int(Double(acknowledged.count) * fraction))]
        }
    }

    let stack: LocalStack
    var connections = 40
    /// Telegram waits 60 s for an answer; tests wait less.
    var timeoutSeconds = 30.0
    /// Longest pause before a redelivery, whatever Retry-After says (tests cannot wait minutes).
    var retryCapSeconds = 1.0

    func deliver(_ updates: [[UInt8]], deadline: Double = 60) throws -> Report {
        let started = monotonicNow()
        // Each update with the earliest time it may be (re)sent.
        let work = Mutex<(waiting: [(index: Int, notBefore: Double)], report: Report, open: Int)>(
            (updates.indices.map { ($0, started) }, Report(), updates.count))
        let caFile = stack.directory.appending(path: "tls/cert.pem").path
        let url = stack.url
        let timeout = timeoutSeconds
        let cap = retryCapSeconds
        let group = DispatchGroup()
        for _ in 0..<connections {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                guard let client = try? HTTPClient(caFile: caFile) else { return }
                while (monotonicNow() - started) < deadline {
                    let next: Int?? = work.withLock { state in
                        if state.open == 0 { return .some(nil) }
                        let now = monotonicNow()
                        guard let position = state.waiting.firstIndex(where: { $0.notBefore <= now }) else { return nil }
                        return .some(state.waiting.remove(at: position).index)
                    }
                    guard let candidate = next else {
                        usleep(5_000)
                        continue
                    }
                    guard let index = candidate else { return }
                    let sent = monotonicNow()
                    let response = try? client.send(
                        HTTPRequest(
                            method: "POST", url: url,
                            headers: [("Content-Type", "application/json"), ("X-Telegram-Bot-Api-Secret-Token", LocalStack.secret)],
                            body: updates[index], timeoutSeconds: timeout))
                    let status = response?.status ?? 0
                    let milliseconds = (monotonicNow() - sent) * 1000
                    let retryAfter = response?.headers.first { $0.name.lowercased() == "retry-after" }.flatMap { Double($0.value) } ?? 1
                    work.withLock { state in
                        state.report.statuses[status, default: 0] += 1
                        if status == 200 {
                            state.report.acknowledged.append(milliseconds)
                            state.open -= 1
                        } else {
                            state.waiting.append((index, monotonicNow() + min(cap, retryAfter)))
                        }
                    }
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        return work.withLock { state in
            var report = state.report
            report.acknowledged.sort()
            report.undelivered = state.open
            report.seconds = monotonicNow() - started
            return report
        }
    }
}

/// A private-chat text message from user `user`, as Telegram sends it.
func textUpdate(id: Int, user: Int, text: String) -> [UInt8] {
    let escaped = text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    return Array(
        #"{"update_id":\#(id),"message":{"message_id":\#(id),"from":{"id":\#(user),"is_bot":false,"first_name":"U"},"chat":{"id":\#(user),"type":"private","first_name":"U"},"date":1732540000,"text":"\#(escaped)"}}"#
            .utf8)
}
