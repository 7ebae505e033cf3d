#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How a Bot API answer is judged, as bot authors learned it: 429 is waited out only while
/// `retry_after` is short, a server or network error is retried once, and "message is not
/// modified" (an edit to the same content) is a success.
public enum BotAPIResponse {
    public enum Verdict: Sendable, Equatable {
        case delivered
        case retry(afterSeconds: Double)
        case failed(BotAPIError)
    }

    /// The longest `retry_after` the gateway waits for inside a request.
    public static let maxRetryAfterSeconds: Double = 5

    /// Judges the answer to attempt number `attempt` (0 first), with `remainingSeconds` left
    /// before the request's deadline.
    public static func verdict(status: Int, body: [UInt8], attempt: Int, remainingSeconds: Double) -> Verdict {
        if (200..<300).contains(status) { return .delivered }
        let answer = try? JSONDecoder().decode(ErrorBody.self, from: Data(body))
        switch status {
        case 429:
            let wait = Double(answer?.parameters?.retryAfter ?? 1)
            guard attempt < 2, wait <= min(maxRetryAfterSeconds, remainingSeconds) else { return .failed(.rateLimited()) }
            return .retry(afterSeconds: wait)
        case 400 where answer?.description?.contains("message is not modified") == true:
            return .delivered
        case 500..<600:
            return attempt == 0 && remainingSeconds > 0.5 ? .retry(afterSeconds: 0.2) : .failed(.server(status: status))
        default:
            return .failed(.rejected(status: status))
        }
    }

    /// A network failure: retried once.
    public static func verdictForTransportFailure(attempt: Int, remainingSeconds: Double) -> Verdict {
        attempt == 0 && remainingSeconds > 0.5 ? .retry(afterSeconds: 0.1) : .failed(.transport)
    }

    /// Telegram's own description of an error answer (it never holds the token), for operators.
    public static func description(of body: [UInt8]) -> String {
        (try? JSONDecoder().decode(ErrorBody.self, from: Data(body)))?.description ?? "no description"
    }

    private struct ErrorBody: Decodable {
        struct Parameters: Decodable {
            let retryAfter: Int?
            private enum CodingKeys: String, CodingKey { case retryAfter = "retry_after" }
        }
        let description: String?
        let parameters: Parameters?
    }
}
