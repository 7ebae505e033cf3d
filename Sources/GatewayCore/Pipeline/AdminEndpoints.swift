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
            // Each read is bounded by the Redis command timeout.
            let deadline = Deadline.distantFuture
            let outbound = try? dependencies.outbound?.backlog(deadline: deadline)
            let queue = try? dependencies.queue?.backlog(deadline: deadline)
            return WebhookResponse(
                status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")],
                body: Array((renderMetrics() + Self.lines(outbound, queue)).utf8))
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

    /// The gauges read from the store at scrape time (pool-wide: every process reports the same
    /// figures; nothing for a store that did not answer), and the build.
    static func lines(_ outbound: OutboundBacklog?, _ queue: QueueBacklog?) -> String {
        var gauges: [(String, String)] = []
        if let outbound {
            gauges.append((GatewayMetric.outboundBacklog, "\(outbound.recipients)"))
            gauges.append((GatewayMetric.outboundOldestAge, "\(Double(outbound.oldestAgeMilliseconds) / 1000)"))
        }
        if let queue {
            gauges.append((GatewayMetric.queueBacklog, "\(queue.entries)"))
            gauges.append((GatewayMetric.queueDeadLettersKept, "\(queue.deadLetters)"))
            gauges.append((GatewayMetric.queueOldestAge, "\(Double(queue.oldestAgeMilliseconds) / 1000)"))
            gauges.append((GatewayMetric.queueRetiringEntries, "\(queue.retiringEntries)"))
            gauges.append((GatewayMetric.fleetProcesses, "\(queue.fleetProcesses)"))
        }
        gauges.append((GatewayMetric.buildInfo + "{version=\"\(GatewayVersion.current)\"}", "1"))
        return GatewayMetric.gaugeLines(gauges.sorted { $0.0 < $1.0 })
    }

    /// `ok` when Redis answers and every circuit is closed; `degraded` otherwise. Still 200:
    /// a degraded gateway answers Telegram (it fails open), so it must not be taken out of service.
    static func health(redisOK: Bool, circuits: [(ServiceName, CircuitBreaker.State)]) -> [UInt8] {
        var writer = JSONWriter()
        let healthy = redisOK && circuits.allSatisfy { $0.1 == .closed }
        writer.field("status", healthy ? "ok" : "degraded")
        writer.field("redis", redisOK ? "ok" : "unavailable")
        writer.object("circuits") { writer in
            for (service, state) in circuits {
                writer.field(service.rawValue, state == .closed ? "closed" : state == .open ? "open" : "half_open")
            }
        }
        return writer.finish()
    }
}
