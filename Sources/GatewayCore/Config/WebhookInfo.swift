#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What getWebhookInfo says, and what it means for an operator.
public struct WebhookInfo: Sendable, Equatable, Decodable {
    public var url: String
    public var pendingUpdateCount: Int
    public var lastErrorDate: Int?
    public var lastErrorMessage: String?
    public var maxConnections: Int?
    public var allowedUpdates: [String]?

    private enum CodingKeys: String, CodingKey {
        case url
        case pendingUpdateCount = "pending_update_count"
        case lastErrorDate = "last_error_date"
        case lastErrorMessage = "last_error_message"
        case maxConnections = "max_connections"
        case allowedUpdates = "allowed_updates"
    }

    public init(
        url: String, pendingUpdateCount: Int, lastErrorDate: Int? = nil, lastErrorMessage: String? = nil, maxConnections: Int? = nil,
        allowedUpdates: [String]? = nil
    ) {
        self.url = url
        self.pendingUpdateCount = pendingUpdateCount
        self.lastErrorDate = lastErrorDate
        self.lastErrorMessage = lastErrorMessage
        self.maxConnections = maxConnections
        self.allowedUpdates = allowedUpdates
    }

    /// Parses a getWebhookInfo answer (`{"ok":true,"result":{…}}`).
    public static func parse(_ body: [UInt8]) -> WebhookInfo? {
        struct Envelope: Decodable {
            let ok: Bool
            let result: WebhookInfo?
        }
        guard let envelope = try? JSONDecoder().decode(Envelope.self, from: Data(body)), envelope.ok else { return nil }
        return envelope.result
    }

    /// Plain words, for `gatewayctl webhook-info`. `now` is Unix seconds.
    public func report(now: Int) -> String {
        var lines: [String] = []
        lines.append(url.isEmpty ? "No webhook is set: Telegram keeps updates for getUpdates." : "Webhook: \(url)")
        lines.append("Updates waiting at Telegram: \(pendingUpdateCount)")
        if let maxConnections { lines.append("Telegram opens at most \(maxConnections) connections at once.") }
        if let allowedUpdates, !allowedUpdates.isEmpty { lines.append("Update types sent: \(allowedUpdates.joined(separator: ", "))") }
        if let date = lastErrorDate, let message = lastErrorMessage {
            let ago = max(0, now - date)
            let when = ago < 120 ? "\(ago) seconds ago" : ago < 7200 ? "\(ago / 60) minutes ago" : "\(ago / 3600) hours ago"
            lines.append("Last delivery error, \(when): \(message)")
            lines.append(Self.advice(for: message))
        } else {
            lines.append("No delivery error reported.")
        }
        return lines.joined(separator: "\n")
    }

    static func advice(for message: String) -> String {
        if message.contains("403") {
            return
                "Meaning: nginx refused the secret. The secret set with set-webhook differs from TELEGRAM_WEBHOOK_SECRET (and _PREVIOUS); run set-webhook again."
        }
        if message.contains("502") || message.contains("504") || message.contains("Connection refused") {
            return "Meaning: nginx could not reach the responder pool. Is the pool running, and can nginx's user open its socket?"
        }
        if message.contains("503") {
            return "Meaning: the gateway asked Telegram to retry later (an update still being processed, or a backlog); Telegram will redeliver."
        }
        if message.contains("SSL") || message.contains("certificate") {
            return "Meaning: Telegram does not trust the TLS certificate. Use a certificate from a public CA, or upload a self-signed one."
        }
        if message.contains("timeout") || message.contains("Timeout") {
            return "Meaning: no answer within 60 s. Check service timeouts and the pool's size."
        }
        return "Meaning: see the message above; Telegram keeps retrying with backoff."
    }
}
