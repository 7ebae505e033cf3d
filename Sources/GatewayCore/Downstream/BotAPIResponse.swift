#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How a Bot API answer is judged, as bot authors learned it: a 429 is handed back with its
/// `retry_after` (the processor pauses the whole pool's sending for it and a worker sends the
/// call afterwards), a server or network error is retried once at once, and "message is not
/// modified" (an edit to the same content) is a success.
public enum BotAPIResponse {
    public enum Verdict: Sendable, Equatable {
        case delivered
        case retry(afterMilliseconds: Int64)
        case failed(BotAPIError)
    }

    /// The longest `retry_after` believed: anything longer (or negative, from a proxy or a
    /// self-hosted Bot API server) is clamped into 0…this.
    public static let maxRetryAfterSeconds = 3600

    /// Judges the answer to attempt number `attempt` (0 first), with `remainingMilliseconds`
    /// left before the deadline.
    public static func verdict(status: Int, body: [UInt8], attempt: Int, remainingMilliseconds: Int64) -> Verdict {
        if (200..<300).contains(status) { return .delivered }
        let answer = try? JSONDecoder().decode(ErrorBody.self, from: Data(body))
        switch status {
        case 429:
            return .failed(.rateLimited(retryAfterSeconds: min(maxRetryAfterSeconds, max(0, answer?.parameters?.retryAfter ?? 1))))
        case 400 where answer?.description?.contains("message is not modified") == true:
            return .delivered
        case 500..<600:
            return attempt == 0 && remainingMilliseconds > 500 ? .retry(afterMilliseconds: 200) : .failed(.server(status: status))
        default:
            return .failed(.rejected(status: status, description: answer?.description))
        }
    }

    /// A network failure: retried once.
    public static func verdictForTransportFailure(attempt: Int, remainingMilliseconds: Int64) -> Verdict {
        attempt == 0 && remainingMilliseconds > 500 ? .retry(afterMilliseconds: 100) : .failed(.transport)
    }

    /// Telegram's own description of an error answer (it never holds the token), for operators.
    public static func description(of body: [UInt8]) -> String {
        (try? JSONDecoder().decode(ErrorBody.self, from: Data(body)))?.description ?? "no description"
    }

    /// getMe's answer: the bot's id and username.
    public static func botIdentity(of body: [UInt8]) -> (id: Int64?, username: String?)? {
        struct Envelope: Decodable {
            struct User: Decodable {
                let id: Int64?
                let username: String?
            }
            let result: User?
        }
        guard let user = (try? JSONDecoder().decode(Envelope.self, from: Data(body)))?.result else { return nil }
        return (user.id, user.username)
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
