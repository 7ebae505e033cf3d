import CoreMetrics

/// The gateway's metric names, declared once with their help texts. Labels are bounded: update
/// types, route labels, outcomes, service names, methods, script names and error codes, never
/// ids or text. Durations are histograms in seconds (`_seconds`), counters end in `_total`.
public enum GatewayMetric {
    public static let updates = "telegram_gateway_updates_total"
    /// Updates handled without Redis: no dedupe, rate limit or session (fail-open).
    public static let failOpen = "telegram_gateway_fail_open_total"
    public static let slowRequests = "telegram_gateway_slow_requests_total"
    public static let webhookSeconds = "telegram_gateway_webhook_seconds"
    public static let serviceSeconds = "telegram_gateway_service_seconds"
    public static let serviceErrors = "telegram_gateway_service_errors_total"
    public static let botAPISeconds = "telegram_gateway_bot_api_seconds"
    public static let botAPIErrors = "telegram_gateway_bot_api_errors_total"
    public static let redisSeconds = "telegram_gateway_redis_seconds"
    public static let dependencyFailures = "telegram_gateway_dependency_failures_total"
    /// Processes whose circuit to a service is open (a gauge each process sets; summed).
    public static let circuitOpen = "telegram_gateway_circuit_open_processes"
    /// Calls lost because the state store was down to keep them for later (fail-open).
    public static let outgoingDropped = "telegram_gateway_outgoing_dropped_total"
    public static let queueEnqueued = "telegram_gateway_queue_enqueued_total"
    public static let queueFull = "telegram_gateway_queue_full_total"
    public static let queueRetries = "telegram_gateway_queue_retries_total"
    public static let queueDeadLetters = "telegram_gateway_queue_dead_letters_total"
    public static let queueProcessed = "telegram_gateway_queue_processed_total"
    /// Gauges read from the store at scrape time: stream entries waiting, the oldest one's age,
    /// dead letters kept.
    public static let queueBacklog = "telegram_gateway_queue_backlog_entries"
    public static let queueOldestAge = "telegram_gateway_queue_oldest_age_seconds"
    public static let queueDeadLettersKept = "telegram_gateway_queue_dead_letters"
    public static let queueRetiringEntries = "telegram_gateway_queue_retiring_entries"
    public static let fleetProcesses = "telegram_gateway_fleet_processes"
    /// Updates of a busy user handed to the user's stream by the webhook path.
    public static let handedOver = "telegram_gateway_handed_over_total"
    /// Calls kept in an outbox for a worker (the chat's window was full, or a retryable failure).
    public static let outboxKept = "telegram_gateway_outbox_kept_total"
    /// Calls a worker sent from an outbox.
    public static let outboxSent = "telegram_gateway_outbox_sent_total"
    /// Paced calls a worker held back because it woke too long after their slot (outbox calls,
    /// and the rare replayed or store-less ones): they took a new one.
    public static let outboxLateSends = "telegram_gateway_outbox_late_sends_total"
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
    /// The pool (per process, summed): threads, busy threads, requests accepted; the
    /// supervisor's children and restarts.
    public static let threads = "telegram_gateway_threads"
    public static let busyThreads = "telegram_gateway_in_flight_requests"
    public static let requests = "telegram_gateway_requests_total"
    public static let processes = "telegram_gateway_processes"
    public static let restarts = "telegram_gateway_child_restarts_total"
    public static let lastReloadFailed = "telegram_gateway_last_reload_failed"
    /// What getWebhookInfo reports, written by `gatewayctl webhook-info --prometheus` for
    /// node_exporter's textfile collector.
    public static let webhookStatus = "telegram_gateway_webhook_status"
    public static let webhookPending = "telegram_gateway_webhook_pending_updates"
    public static let webhookLastError = "telegram_gateway_webhook_last_error_timestamp_seconds"
    public static let webhookURLMatches = "telegram_gateway_webhook_url_matches"
    public static let webhookCheckTime = "telegram_gateway_webhook_check_timestamp_seconds"
    /// Always 1, labelled with the version.
    public static let buildInfo = "telegram_gateway_build_info"

    /// Every family's help text, as `# HELP` shows it.
    public static let help: [String: String] = [
        updates: "Webhook requests by update type, route and outcome.",
        failOpen: "Updates handled while Redis was unavailable: no dedupe, rate limit or session (fail-open).",
        slowRequests: "Webhook requests slower than SLOW_REQUEST.",
        webhookSeconds: "Time from a webhook request's arrival to its answer to Telegram.",
        serviceSeconds: "Internal service calls by service.",
        serviceErrors: "Internal service calls that failed, by service and error.",
        botAPISeconds: "Bot API calls by method.",
        botAPIErrors: "Bot API calls that failed, by method and kind.",
        redisSeconds: "Redis round trips by operation (a script's name, or the command).",
        dependencyFailures: "Calls to a dependency that failed, by dependency.",
        circuitOpen: "Responder processes whose circuit to the service is open.",
        outgoingDropped: "Bot API calls lost because Redis was down to keep them for later.",
        queueEnqueued: "Updates stored in a partition stream by the webhook path.",
        queueFull: "Updates refused with 503 because the partition was at QUEUE_MAX_BACKLOG.",
        queueRetries: "Stream entries retried, by reason.",
        queueDeadLetters: "Stream entries given up on and kept as dead letters, by reason.",
        queueProcessed: "Stream entries processed by workers.",
        queueBacklog: "Stream entries waiting or in progress, all partitions (read from Redis at scrape).",
        queueOldestAge: "Age of the oldest stream entry, all partitions (read from Redis at scrape).",
        queueDeadLettersKept: "Dead letters kept in Redis, all partitions (read from Redis at scrape).",
        queueRetiringEntries: "Stream entries above QUEUE_PARTITIONS, left by a larger count and still being drained (read from Redis at scrape).",
        fleetProcesses: "Responder processes of every host registered in the fleet (read from Redis at scrape).",
        handedOver: "Updates of a busy user handed to the user's stream.",
        outboxKept: "Bot API calls kept in an outbox for a worker.",
        outboxSent: "Bot API calls a worker sent from an outbox.",
        outboxLateSends: "Paced Bot API calls a worker held back because it woke too long after their slot; each took a new slot.",
        outboxDeadLetters: "Bot API calls given up on after their last attempt, by reason.",
        outboundAccepted: "Outbound send requests accepted.",
        outboundRecipients: "Recipients of accepted outbound send requests.",
        outboundRefused: "Outbound send requests refused, by reason.",
        outboundDelivered: "Outbound recipients delivered.",
        outboundFailed: "Outbound recipients given up on, by reason.",
        outboundBacklog: "Outbound recipients not yet delivered or given up on (read from Redis at scrape).",
        outboundOldestAge: "Age of the oldest unfinished outbound request (read from Redis at scrape).",
        threads: "FastCGI threads of the live responder processes.",
        busyThreads: "FastCGI threads handling a request.",
        requests: "FastCGI requests accepted by responder processes, exited ones included.",
        processes: "Responder processes the supervisor runs.",
        restarts: "Responder processes that died and were restarted by the supervisor.",
        lastReloadFailed: "1 when the supervisor refused the last reload (SIGHUP) because --check-config failed; the old children serve on.",
        buildInfo: "The running build: always 1, labelled with the version.",
        webhookStatus: "gatewayctl webhook-info's verdict: 0 ok, 1 warning, 2 critical, 3 the Bot API could not be asked.",
        webhookPending: "Updates waiting at Telegram for the webhook (getWebhookInfo).",
        webhookLastError: "When Telegram last failed to deliver an update to the webhook, Unix seconds (0: no error reported).",
        webhookURLMatches: "1 when Telegram posts to WEBHOOK_URL (without WEBHOOK_URL: when any webhook is set).",
        webhookCheckTime: "When gatewayctl last asked Telegram about the webhook, Unix seconds.",
    ]
}

extension GatewayMetric {
    /// Gauges in Prometheus' text format, each with its HELP and TYPE: `series` is the family's
    /// name, with its labels when it has any.
    public static func gaugeLines(_ gauges: [(series: String, value: String)]) -> String {
        gauges.map { series, value in
            let family = String(series.prefix { $0 != "{" })
            return "# HELP \(family) \(help[family] ?? "")\n# TYPE \(family) gauge\n\(series) \(value)\n"
        }.joined()
    }
}

/// The gateway's version, reported by every executable's `--version` and by
/// `telegram_gateway_build_info`. Raised with every release.
public enum GatewayVersion {
    public static let current = "0.19.0"
}
