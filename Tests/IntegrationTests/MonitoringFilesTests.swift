import Foundation
import GatewayCore
import Testing

/// scripts/monitoring: the alert rules pass Prometheus' own checks and unit tests, and the rules
/// and the dashboard only name metrics the gateway exports.
@Suite struct MonitoringFilesTests {
    static let folder = LocalStack.packageRoot.appending(path: "scripts/monitoring")

    /// Every `telegram_gateway_…` name in `text`, histogram series suffixes removed.
    static func metricNames(in text: String) -> Set<String> {
        var names = Set<String>()
        var rest = Substring(text)
        while let start = rest.firstRange(of: "telegram_gateway_") {
            let name = rest[start.lowerBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            var family = String(name)
            for suffix in ["_bucket", "_sum", "_count"] where family.hasSuffix(suffix) && GatewayMetric.help[family] == nil {
                family = String(family.dropLast(suffix.count))
            }
            names.insert(family)
            rest = rest[name.endIndex...]
        }
        return names
    }

    @Test func theAlertRulesPassPromtoolAndTheirUnitTests() throws {
        let check = try ChildProcess.runCapturing("/usr/bin/promtool", ["check", "rules", Self.folder.appending(path: "alerts.yml").path])
        #expect(check.code == 0 && check.output.contains("SUCCESS: 17 rules found"), "\(check.output)")
        // promtool resolves rule_files against the test file's folder.
        let test = try ChildProcess.runCapturing("/usr/bin/promtool", ["test", "rules", Self.folder.appending(path: "alerts.test.yml").path])
        #expect(test.code == 0 && test.output.contains("SUCCESS"), "\(test.output)")
    }

    @Test func theRulesAndTheDashboardNameOnlyMetricsTheGatewayExports() throws {
        let alerts = try String(contentsOf: Self.folder.appending(path: "alerts.yml"), encoding: .utf8)
        let dashboardText = try String(contentsOf: Self.folder.appending(path: "dashboard.json"), encoding: .utf8)
        let dashboard = try #require(try JSONSerialization.jsonObject(with: Data(dashboardText.utf8)) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        let expressions = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        #expect(panels.count >= 15 && expressions.count >= panels.count, "every panel queries something")
        let known = Set(GatewayMetric.help.keys)
        for (file, text) in [("alerts.yml", alerts), ("dashboard.json", expressions.joined(separator: "\n"))] {
            let unknown = Self.metricNames(in: text).subtracting(known)
            #expect(unknown.isEmpty, "\(file) names metrics nobody exports: \(unknown.sorted())")
        }
        // What operators watch is covered by an alert.
        for watched in [
            GatewayMetric.webhookPending, GatewayMetric.webhookLastError, GatewayMetric.failOpen, GatewayMetric.queueOldestAge,
            GatewayMetric.queueDeadLetters, GatewayMetric.circuitOpen, GatewayMetric.restarts, GatewayMetric.lastReloadFailed,
            GatewayMetric.outboxLateSends,
        ] {
            #expect(alerts.contains(watched), "no alert on \(watched)")
        }
    }
}
