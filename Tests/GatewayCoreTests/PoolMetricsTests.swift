import CoreMetrics
import Foundation
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

        let first = PoolMetrics(), second = PoolMetrics()
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

    @Test func labelValuesAreEscaped() {
        let metrics = PoolMetrics()
        metrics.makeCounter(label: "x", dimensions: [("k", "a\"b\\c")]).increment(by: 1)
        #expect(metrics.snapshot() == "counter x{k=\"a\\\"b\\\\c\"} 1\n")
    }
}
