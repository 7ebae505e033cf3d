/// The pool's own endpoints next to the webhook, served to loopback only by nginx:
/// Prometheus metrics for the whole pool, and a health summary.
public struct AdminEndpoints: Sendable {
    public static let metricsPath = "/telegram-gateway/metrics"
    public static let healthPath = "/telegram-gateway/health"
    public static let statusPath = "/telegram-gateway/status"

    private let renderMetrics: @Sendable () -> String
    private let renderStatus: @Sendable () -> String
    private let breaker: CircuitBreaker
    private let services: [ServiceName]

    public init(
        services: [ServiceName], breaker: CircuitBreaker, renderMetrics: @escaping @Sendable () -> String,
        renderStatus: @escaping @Sendable () -> String
    ) {
        self.services = services.sorted { $0.rawValue < $1.rawValue }
        self.breaker = breaker
        self.renderMetrics = renderMetrics
        self.renderStatus = renderStatus
    }

    /// The answer for `path`, or nil when the path is not one of these endpoints.
    public func respond(to path: String, dependencies: ThreadDependencies) -> WebhookResponse? {
        let state = dependencies.state
        switch path {
        case Self.metricsPath:
            let backlog = try? dependencies.outbound?.backlog(deadline: .distantFuture)
            return WebhookResponse(
                status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")], body: Array((renderMetrics() + Self.lines(backlog)).utf8))
        case Self.statusPath:
            return WebhookResponse(status: 200, headers: [("Content-Type", "application/json")], body: Array(renderStatus().utf8))
        case Self.healthPath:
            let redisOK = (try? state.ping()) != nil
            return WebhookResponse(
                status: 200, headers: [("Content-Type", "application/json")],
                body: Self.health(redisOK: redisOK, circuits: services.map { ($0, breaker.state(of: $0)) }))
        default:
            return nil
        }
    }

    /// The outbound backlog, read from the store at scrape time (pool-wide: every process
    /// reports the same figures); nothing when the store did not answer.
    static func lines(_ backlog: OutboundBacklog?) -> String {
        guard let backlog else { return "" }
        let recipients = GatewayMetric.outboundBacklog
        let age = GatewayMetric.outboundOldestAge
        return "# HELP \(recipients) Outbound recipients not yet delivered or given up on, pool-wide.\n# TYPE \(recipients) gauge\n"
            + "\(recipients) \(backlog.recipients)\n"
            + "# HELP \(age) Age of the oldest unfinished outbound request, pool-wide.\n# TYPE \(age) gauge\n"
            + "\(age) \(Double(backlog.oldestAgeMilliseconds) / 1000)\n"
    }

    /// `ok` when Redis answers and every circuit is closed; `degraded` otherwise. Still 200:
    /// a degraded gateway answers Telegram (it fails open), so it must not be taken out of service.
    static func health(redisOK: Bool, circuits: [(ServiceName, CircuitBreaker.State)]) -> [UInt8] {
        var writer = JSONWriter()
        let healthy = redisOK && circuits.allSatisfy { $0.1 == .closed }
        writer.field("status", healthy ? "ok" : "degraded")
        writer.field("redis", redisOK ? "ok" : "unavailable")
        var circuitWriter = JSONWriter()
        for (service, state) in circuits {
            circuitWriter.field(service.rawValue, state == .closed ? "closed" : state == .open ? "open" : "half_open")
        }
        writer.field("circuits", json: circuitWriter.finish())
        return writer.finish()
    }
}
