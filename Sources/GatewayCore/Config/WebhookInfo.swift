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
    public var ipAddress: String?
    public var hasCustomCertificate: Bool?

    private enum CodingKeys: String, CodingKey {
        case url
        case pendingUpdateCount = "pending_update_count"
        case lastErrorDate = "last_error_date"
        case lastErrorMessage = "last_error_message"
        case maxConnections = "max_connections"
        case allowedUpdates = "allowed_updates"
        case ipAddress = "ip_address"
        case hasCustomCertificate = "has_custom_certificate"
    }

    public init(
        url: String, pendingUpdateCount: Int, lastErrorDate: Int? = nil, lastErrorMessage: String? = nil, maxConnections: Int? = nil,
        allowedUpdates: [String]? = nil, ipAddress: String? = nil, hasCustomCertificate: Bool? = nil
    ) {
        self.url = url
        self.pendingUpdateCount = pendingUpdateCount
        self.lastErrorDate = lastErrorDate
        self.lastErrorMessage = lastErrorMessage
        self.maxConnections = maxConnections
        self.allowedUpdates = allowedUpdates
        self.ipAddress = ipAddress
        self.hasCustomCertificate = hasCustomCertificate
    }

    /// How a monitoring check should read the webhook, with the exit code `webhook-info`
    /// gives for it (the Nagios plugin convention, which most monitoring systems run).
    public enum Status: String, Sendable, Comparable {
        case ok, warning, critical

        public var exitCode: Int32 {
            switch self {
            case .ok: 0
            case .warning: 1
            case .critical: 2
            }
        }

        public static func < (left: Status, right: Status) -> Bool { left.exitCode < right.exitCode }
    }

    /// When a check warns and when it is critical.
    public struct Thresholds: Sendable, Equatable {
        /// Updates waiting at Telegram.
        public var pendingWarning: Int
        public var pendingCritical: Int
        /// A delivery error this recent (seconds) is a warning; critical when updates wait too.
        public var recentErrorSeconds: Int

        public init(pendingWarning: Int = 100, pendingCritical: Int = 1000, recentErrorSeconds: Int = 600) {
            self.pendingWarning = pendingWarning
            self.pendingCritical = pendingCritical
            self.recentErrorSeconds = recentErrorSeconds
        }
    }

    /// The status and its reasons: no webhook, or one pointing elsewhere than `expectedURL`, is
    /// critical; so are pending updates past the critical threshold, or a recent delivery
    /// error while updates wait. A recent error alone, or a backlog past the warning
    /// threshold, warns.
    public func assess(now: Int, expectedURL: String?, thresholds: Thresholds = Thresholds()) -> (Status, [String]) {
        var status = Status.ok
        var reasons: [String] = []
        func raise(_ level: Status, _ reason: String) {
            status = max(status, level)
            reasons.append(reason)
        }
        if url.isEmpty {
            raise(.critical, "no webhook is set")
        } else if let expectedURL, url != expectedURL {
            raise(.critical, "Telegram posts to \(url), not to WEBHOOK_URL \(expectedURL)")
        }
        let recentError = lastErrorDate.map { now - $0 <= thresholds.recentErrorSeconds } ?? false
        if pendingUpdateCount >= thresholds.pendingCritical {
            raise(.critical, "\(pendingUpdateCount) updates waiting at Telegram")
        } else if recentError && pendingUpdateCount > 0 {
            raise(.critical, "a delivery error \(now - (lastErrorDate ?? now)) s ago and \(pendingUpdateCount) updates waiting")
        } else if pendingUpdateCount >= thresholds.pendingWarning {
            raise(.warning, "\(pendingUpdateCount) updates waiting at Telegram")
        } else if recentError {
            raise(.warning, "a delivery error \(now - (lastErrorDate ?? now)) s ago")
        }
        return (status, reasons)
    }

    /// The webhook info and its assessment as one JSON object, for scripts and monitoring.
    public func json(now: Int, expectedURL: String?, thresholds: Thresholds = Thresholds()) -> String {
        let (status, reasons) = assess(now: now, expectedURL: expectedURL, thresholds: thresholds)
        var writer = JSONWriter()
        writer.field("status", status.rawValue)
        writer.field("reasons", json: JSONValue.array(reasons.map { .string($0) }).serialized)
        writer.field("url", url)
        if let expectedURL { writer.field("expected_url", expectedURL) }
        writer.field("url_matches", expectedURL.map { $0 == url } ?? !url.isEmpty)
        writer.field("pending_update_count", Int64(pendingUpdateCount))
        if let lastErrorDate {
            writer.field("last_error_date", Int64(lastErrorDate))
            writer.field("last_error_age_seconds", Int64(max(0, now - lastErrorDate)))
        }
        if let lastErrorMessage {
            writer.field("last_error_message", lastErrorMessage)
            writer.field("advice", Self.advice(for: lastErrorMessage))
        }
        if let maxConnections { writer.field("max_connections", Int64(maxConnections)) }
        if let allowedUpdates { writer.field("allowed_updates", json: JSONValue.array(allowedUpdates.map { .string($0) }).serialized) }
        if let ipAddress { writer.field("ip_address", ipAddress) }
        if let hasCustomCertificate { writer.field("has_custom_certificate", hasCustomCertificate) }
        return String(decoding: writer.finish(), as: UTF8.self)
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

    /// The webhook's state as Prometheus metrics, for node_exporter's textfile collector
    /// (`gatewayctl webhook-info --prometheus FILE`, run by a timer): what Telegram reports is
    /// not in the pool's own metrics. `self` nil: the Bot API could not be asked (status 3).
    public static func prometheus(_ info: WebhookInfo?, now: Int, expectedURL: String?, thresholds: Thresholds = Thresholds()) -> String {
        var gauges: [(String, String)] = [(GatewayMetric.webhookCheckTime, "\(now)")]
        if let info {
            let (status, _) = info.assess(now: now, expectedURL: expectedURL, thresholds: thresholds)
            gauges += [
                (GatewayMetric.webhookStatus, "\(status.exitCode)"),
                (GatewayMetric.webhookPending, "\(info.pendingUpdateCount)"),
                (GatewayMetric.webhookLastError, "\(info.lastErrorDate ?? 0)"),
                (GatewayMetric.webhookURLMatches, (expectedURL.map { $0 == info.url } ?? !info.url.isEmpty) ? "1" : "0"),
            ]
        } else {
            gauges.append((GatewayMetric.webhookStatus, "3"))
        }
        return GatewayMetric.gaugeLines(gauges)
    }

    /// Plain words, for `gatewayctl webhook-info`. `now` is Unix seconds.
    public func report(now: Int, expectedURL: String? = nil) -> String {
        var lines: [String] = []
        lines.append(url.isEmpty ? "No webhook is set: Telegram keeps updates for getUpdates." : "Webhook: \(url)")
        if let expectedURL, !url.isEmpty, url != expectedURL {
            lines.append("This is not WEBHOOK_URL (\(expectedURL)): run gatewayctl set-webhook, or correct WEBHOOK_URL.")
        }
        if let ipAddress { lines.append("Telegram connects to \(ipAddress).") }
        if hasCustomCertificate == true { lines.append("Telegram uses the certificate uploaded with set-webhook.") }
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
        if message.contains("404") {
            return
                "Meaning: the URL's path reaches nginx but no webhook location: the URL must end in /webhook/telegram, on the server block that includes the location snippet."
        }
        if message.contains("429") {
            return "Meaning: nginx's coarse limit (limit_req in conf.d/telegram-gateway.conf) refused Telegram; raise its rate or burst."
        }
        if message.contains("413") {
            return "Meaning: an update was larger than client_max_body_size; raise it in the location snippet (and MAX_BODY_BYTES)."
        }
        if message.contains("500") {
            return "Meaning: the pool answered 500; look for the request in the gateway's log (LOG_FILE or the journal) by time."
        }
        if message.contains("resolve") || message.contains("Name or service") {
            return "Meaning: Telegram cannot resolve the webhook's host name: check the domain's DNS records."
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
