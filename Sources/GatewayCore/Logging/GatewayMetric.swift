import CoreMetrics

/// The gateway's metric names, declared once. Labels are bounded: update types, route labels,
/// outcomes, service names and error codes, never ids or text.
public enum GatewayMetric {
    public static let updates = "telegram_gateway_updates_total"
    public static let degraded = "telegram_gateway_degraded_total"
    public static let serviceSeconds = "telegram_gateway_service_seconds"
    public static let serviceErrors = "telegram_gateway_service_errors_total"
    public static let botAPIErrors = "telegram_gateway_bot_api_errors_total"
    public static let dependencyFailures = "telegram_gateway_dependency_failures_total"
    /// Calls lost because the state store was down to keep them for later (fail-open).
    public static let outgoingDropped = "telegram_gateway_outgoing_dropped_total"
    public static let queueEnqueued = "telegram_gateway_queue_enqueued_total"
    public static let queueFull = "telegram_gateway_queue_full_total"
    public static let queueRetries = "telegram_gateway_queue_retries_total"
    public static let queueDeadLetters = "telegram_gateway_queue_dead_letters_total"
    public static let queueProcessed = "telegram_gateway_queue_processed_total"
    /// Updates of a busy user handed to the user's stream by the webhook path.
    public static let handedOver = "telegram_gateway_handed_over_total"
    /// Calls kept in an outbox for a worker (the chat's window was full, or a retryable failure).
    public static let outboxKept = "telegram_gateway_outbox_kept_total"
    /// Calls a worker sent from an outbox.
    public static let outboxSent = "telegram_gateway_outbox_sent_total"
    /// Calls given up after their last attempt, kept among the dead letters.
    public static let outboxDeadLetters = "telegram_gateway_outbox_dead_letters_total"
    /// Outbound requests accepted (stored), and their recipients.
    public static let outboundAccepted = "telegram_gateway_outbound_accepted_total"
    public static let outboundRecipients = "telegram_gateway_outbound_recipients_total"
    /// Outbound requests refused, by reason (token, invalid, too_large, full).
    public static let outboundRefused = "telegram_gateway_outbound_refused_total"
    /// Outbound recipients delivered, and given up on by reason.
    public static let outboundDelivered = "telegram_gateway_outbound_delivered_total"
    public static let outboundFailed = "telegram_gateway_outbound_failed_total"
    /// Gauges read from the store at scrape time: recipients not yet done, the oldest request's age.
    public static let outboundBacklog = "telegram_gateway_outbound_backlog_recipients"
    public static let outboundOldestAge = "telegram_gateway_outbound_oldest_age_seconds"
}
