import CoreMetrics
import Foundation
import GatewayCore
import GatewayMetrics
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct PoolMetricsTests {
    @Test func snapshotsOfSeveralProcessesAreSummedGaugesOnlyFromLiveOnes() throws {
        let folder = FileManager.default.temporaryDirectory.appending(path: "metrics-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let files = MetricsFiles(directory: folder)
        files.prepare()

        let first = PoolMetrics()
        let second = PoolMetrics()
        first.makeCounter(label: "updates_total", dimensions: [("outcome", "replied")]).increment(by: 3)
        second.makeCounter(label: "updates_total", dimensions: [("outcome", "replied")]).increment(by: 4)
        second.makeCounter(label: "updates_total", dimensions: [("outcome", "ignored")]).increment(by: 1)
        first.makeTimer(label: "service_seconds", dimensions: [("service", "matching")]).recordNanoseconds(20_000_000)
        second.makeTimer(label: "service_seconds", dimensions: [("service", "matching")]).recordNanoseconds(2_000_000_000)
        first.makeRecorder(label: "in_flight", dimensions: [], aggregate: false).record(Int64(2))
        second.makeRecorder(label: "in_flight", dimensions: [], aggregate: false).record(Int64(5))

        files.write(first.snapshot(), pid: getpid())  // alive
        files.write(second.snapshot(), pid: 999_999_999)  // long gone
        let text = files.render()
        #expect(text.contains("# TYPE updates_total counter\n"))
        #expect(text.contains(#"updates_total{outcome="replied"} 7"#))
        #expect(text.contains(#"updates_total{outcome="ignored"} 1"#))
        #expect(text.contains("# TYPE service_seconds histogram\n"))
        #expect(text.contains(#"service_seconds_bucket{service="matching",le="0.025"} 1"#))
        #expect(text.contains(#"service_seconds_bucket{service="matching",le="2.5"} 2"#))
        #expect(text.contains(#"service_seconds_count{service="matching"} 2"#))
        #expect(text.contains("in_flight 2\n"), "the gauge of the exited process is left out")
    }

    @Test func filesOfExitedProcessesAreFoldedSoTheFolderStaysBoundedAndCountersNeverGoBack() throws {
        let folder = FileManager.default.temporaryDirectory.appending(path: "metrics-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let files = MetricsFiles(directory: folder)
        files.prepare()
        // A thousand recycled processes, each having counted one request and holding a gauge.
        for pid in 1...1000 {
            let metrics = PoolMetrics()
            metrics.makeCounter(label: "requests_total", dimensions: []).increment(by: 1)
            metrics.makeRecorder(label: "busy", dimensions: [], aggregate: false).record(Int64(1))
            files.write(metrics.snapshot(), pid: pid_t(4_000_000 + pid))  // none of them runs
        }
        let live = PoolMetrics()
        live.makeCounter(label: "requests_total", dimensions: []).increment(by: 5)
        files.write(live.snapshot())
        #expect(files.render().contains("requests_total 1005\n"))
        let left = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".metrics") }.sorted()
        #expect(left.count == 2, "the live process's file and the retired sum: \(left.prefix(3))")
        #expect(left.contains("retired.metrics"))
        // Folding again (another scrape, the live process gone) keeps every count.
        #expect(files.render().contains("requests_total 1005\n"))
        #expect(!files.render().contains("busy"), "gauges of exited processes are gone")
    }

    @Test func aPidTheKernelGivesAgainDoesNotReviveADeadProcessesGauges() throws {
        let folder = FileManager.default.temporaryDirectory.appending(path: "metrics-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let files = MetricsFiles(directory: folder)
        files.prepare()
        // A dead process had this test's pid, with another start time.
        try "gauge in_flight 7\ncounter requests_total 3\n".write(toFile: "\(folder)/\(getpid())-1.metrics", atomically: false, encoding: .utf8)
        let text = files.render()
        #expect(!text.contains("in_flight"), "the pid runs, but it is not that process")
        #expect(text.contains("requests_total 3\n"))
    }

    @Test func eachFamilyIsRenderedOnceWithHelpAndTypeAndBucketsInIncreasingBound() throws {
        let folder = FileManager.default.temporaryDirectory.appending(path: "metrics-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let files = MetricsFiles(directory: folder)
        files.prepare()
        let metrics = PoolMetrics()
        for (service, nanoseconds) in [("b", Int64(3_000_000_000)), ("a", 20_000_000), ("a,\"x\"", 1)] {
            metrics.makeTimer(label: GatewayMetric.serviceSeconds, dimensions: [("service", service)]).recordNanoseconds(nanoseconds)
        }
        metrics.makeCounter(label: GatewayMetric.updates, dimensions: [("outcome", "replied")]).increment(by: 1)
        files.write(metrics.snapshot())
        let lines = files.render().split(separator: "\n").map(String.init)

        let family = GatewayMetric.serviceSeconds
        #expect(lines.filter { $0.hasPrefix("# HELP \(family) ") } == ["# HELP \(family) \(try #require(GatewayMetric.help[family]))"])
        #expect(lines.filter { $0.hasPrefix("# TYPE \(family) ") } == ["# TYPE \(family) histogram"])
        #expect(lines.contains("# HELP \(GatewayMetric.updates) \(try #require(GatewayMetric.help[GatewayMetric.updates]))"))
        // Service a's series: buckets by bound (not "10.0" before "2.5", "+Inf" last), then sum, count.
        let seriesOfA = lines.filter { $0.contains(#"service="a""#) }.map { $0.split(separator: " ")[0] }
        let bounds = PoolMetrics.buckets.map { "\($0)" } + ["+Inf"]
        #expect(
            seriesOfA == bounds.map { "\(family)_bucket{service=\"a\",le=\"\($0)\"}" } + [
                "\(family)_sum{service=\"a\"}", "\(family)_count{service=\"a\"}",
            ])
        // The family's lines are together, right after its HELP and TYPE.
        let first = try #require(lines.firstIndex { $0.hasPrefix("# HELP \(family)") })
        let members = lines.indices.filter { lines[$0].hasPrefix(family) }
        #expect(members == Array((first + 2)..<(first + 2 + members.count)))
        #expect(members.count == 3 * (PoolMetrics.buckets.count + 3))
    }

    @Test func labelValuesAreEscaped() {
        let metrics = PoolMetrics()
        metrics.makeCounter(label: "x", dimensions: [("k", "a\"b\\c")]).increment(by: 1)
        #expect(metrics.snapshot() == "counter x{k=\"a\\\"b\\\\c\"} 1\n")
    }
}
