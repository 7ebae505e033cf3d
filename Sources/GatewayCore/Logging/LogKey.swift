/// Metadata keys, declared once so every line spells them the same way.
///
/// Values are ids, sizes, codes and durations only: never message text, callback data, names,
/// tokens or secrets.
public enum LogKey {
    public static let requestID = "request_id"
    public static let updateID = "update_id"
    public static let updateType = "update_type"
    public static let userID = "user_id"
    public static let chatID = "chat_id"
    public static let route = "route"
    public static let outcome = "outcome"
    /// A stream worker's attempt at an entry.
    public static let attempt = "attempt"
    public static let latencyMilliseconds = "latency_ms"
    /// Time spent deciding the answer (the service call, if any).
    public static let serviceMilliseconds = "service_ms"
    /// Time spent delivering it (Bot API calls, outgoing-limit waits).
    public static let deliveryMilliseconds = "delivery_ms"
    public static let reason = "reason"
    public static let bodyBytes = "body_bytes"
    public static let status = "status"
    public static let pid = "pid"
    public static let error = "error"
    /// Set when a dependency failed and the update was handled without it (fail-open).
    public static let degraded = "degraded"
}
