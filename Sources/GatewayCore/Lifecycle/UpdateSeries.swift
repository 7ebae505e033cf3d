import CoreMetrics

/// The webhook path's metric handles, made once each. `Counter(label:dimensions:)` asks the
/// factory every time, which hashes the label and every dimension to find the series; per
/// update that was the updates counter and the webhook timer. The series are few: update
/// types, the route table's targets and the outcomes.
final class UpdateSeries: Sendable {
    private struct Key: Hashable {
        let type: String
        let route: String
        let outcome: RequestOutcome
    }

    let webhookSeconds = Timer(label: GatewayMetric.webhookSeconds)
    private let updates = Locked<[Key: Counter]>([:])

    /// Counts an update by type, route and outcome ("none" for requests that never became one).
    func count(_ outcome: RequestOutcome, type: String, route: String) {
        let key = Key(type: type, route: route, outcome: outcome)
        let counter = updates.withLock { counters in
            if let known = counters[key] { return known }
            let made = Counter(label: GatewayMetric.updates, dimensions: [("type", type), ("route", route), ("outcome", outcome.rawValue)])
            counters[key] = made
            return made
        }
        counter.increment()
    }
}
