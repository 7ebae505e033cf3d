import CoreMetrics
import GatewayCore

#if canImport(Glibc)
import Glibc
#endif

/// The Bot API over libcurl, on one reused handle per thread. Its URLs hold the bot token, so
/// nothing here ever logs or throws a URL: errors are built from status codes and curl codes.
public final class CurlBotAPI: BotAPI {
    private let baseURL: String
    private let token: Secret
    private let timeoutSeconds: Double
    private let clock: @Sendable () -> UInt64
    private var client: HTTPClient?
    /// Telegram's answers are small; a larger one is not read.
    static let maxAnswerBytes = 1 << 20

    public init(baseURL: String, token: Secret, timeoutSeconds: Double = 10, clock: @escaping @Sendable () -> UInt64) {
        self.baseURL = baseURL
        self.token = token
        self.timeoutSeconds = timeoutSeconds
        self.clock = clock
    }

    public func call(_ call: BotCall, deadline: Deadline) throws(BotAPIError) {
        let started = clock()
        defer {
            Timer(label: GatewayMetric.botAPISeconds, dimensions: [("method", call.name)])
                .recordNanoseconds(Int64(clamping: clock() &- started))
        }
        guard let client = client ?? (try? HTTPClient()) else { throw .transport }
        self.client = client
        let own = Deadline.after(seconds: timeoutSeconds, from: clock()).capped(by: deadline)
        let url = "\(baseURL)/bot\(token.reveal())/\(call.name)"
        var attempt = 0
        while true {
            guard let remaining = own.timeout(cappedAt: timeoutSeconds, at: clock()) else { throw .transport }
            let remainingMilliseconds = Int64(remaining * 1000)
            let verdict: BotAPIResponse.Verdict
            do {
                let response = try client.send(
                    HTTPRequest(
                        method: "POST", url: url, headers: [("Content-Type", "application/json")], body: call.parameters,
                        timeoutSeconds: remaining, connectTimeoutSeconds: min(2, remaining), maxResponseBytes: Self.maxAnswerBytes))
                verdict = BotAPIResponse.verdict(
                    status: response.status, body: response.body, attempt: attempt, remainingMilliseconds: remainingMilliseconds)
            } catch {
                verdict = BotAPIResponse.verdictForTransportFailure(attempt: attempt, remainingMilliseconds: remainingMilliseconds)
            }
            switch verdict {
            case .delivered: return
            case .failed(let error): throw error
            case .retry(let milliseconds):
                Self.sleep(milliseconds: milliseconds)
                attempt += 1
            }
        }
    }

    /// Sleeps `milliseconds` (never negative, whatever a peer said).
    static func sleep(milliseconds: Int64) {
        let clamped = max(0, milliseconds)
        var request = timespec(tv_sec: Int(clamped / 1000), tv_nsec: Int(clamped % 1000) * 1_000_000)
        var left = timespec()
        while nanosleep(&request, &left) != 0 && errno == EINTR { request = left }
    }
}
