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

    public init(baseURL: String, token: Secret, timeoutSeconds: Double = 10, clock: @escaping @Sendable () -> UInt64) {
        self.baseURL = baseURL
        self.token = token
        self.timeoutSeconds = timeoutSeconds
        self.clock = clock
    }

    public func call(_ method: BotMethod) throws(BotAPIError) {
        guard let client = client ?? (try? HTTPClient()) else { throw .transport }
        self.client = client
        let deadline = clock() + UInt64(timeoutSeconds * 1e9)
        let url = "\(baseURL)/bot\(token.reveal())/\(method.name)"
        let body = method.parameters
        var attempt = 0
        while true {
            let now = clock()
            let remaining = now < deadline ? Double(deadline - now) / 1e9 : 0
            guard remaining > 0 else { throw .transport }
            let verdict: BotAPIResponse.Verdict
            do {
                let response = try client.send(HTTPRequest(
                    method: "POST", url: url, headers: [("Content-Type", "application/json")], body: body,
                    timeoutSeconds: remaining, connectTimeoutSeconds: min(2, remaining)))
                verdict = BotAPIResponse.verdict(status: response.status, body: response.body, attempt: attempt, remainingSeconds: remaining)
            } catch {
                verdict = BotAPIResponse.verdictForTransportFailure(attempt: attempt, remainingSeconds: remaining)
            }
            switch verdict {
            case .delivered: return
            case .failed(let error): throw error
            case .retry(let seconds):
                usleep(UInt32(seconds * 1_000_000))
                attempt += 1
            }
        }
    }
}
