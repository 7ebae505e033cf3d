import CoreMetrics
import GatewayCore
import Synchronization

/// A swift-metrics backend for a pool of processes: each process keeps its series in memory and
/// writes them to its own file (`MetricsSnapshot`); whichever process serves `/metrics` sums the
/// files of the whole pool (`MetricsAggregate`), the way prometheus_client's multiprocess mode
/// does. Counters and histograms of exited processes still count; gauges only from live ones.
public final class PoolMetrics: MetricsFactory, Sendable {
    /// Histogram buckets in seconds: a webhook answer should take milliseconds, a service call
    /// up to its timeout.
    public static let buckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

    /// A series as the code names it: looked up on every `Counter(label:dimensions:)`, so it is
    /// hashed as given; the Prometheus form is rendered once, when the series is created.
    private struct SeriesName: Hashable {
        let label: String
        let dimensions: [String]

        init(_ label: String, _ dimensions: [(String, String)]) {
            self.label = label
            self.dimensions = dimensions.flatMap { [$0.0, $0.1] }
        }
    }

    private let series = Locked<[SeriesName: (key: String, cell: any SeriesCell)]>([:])

    public init() {}

    /// Every series as snapshot lines: `KIND NAME{LABELS} VALUE`.
    public func snapshot() -> String {
        let cells = series.withLock { Array($0.values) }
        return cells.sorted { $0.key < $1.key }.map { $0.cell.lines($0.key) }.joined()
    }

    private func cell<Cell: SeriesCell>(_ label: String, _ dimensions: [(String, String)], make: () -> Cell) -> Cell {
        let name = SeriesName(label, dimensions)
        return series.withLock { series in
            if let existing = series[name]?.cell as? Cell { return existing }
            let cell = make()
            series[name] = (Self.key(label, dimensions), cell)
            return cell
        }
    }

    /// `name{a="x",b="y"}` with labels sorted and values escaped, as Prometheus writes them.
    static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        let name = String(label.map { $0.isLetter || $0.isNumber || $0 == "_" ? $0 : "_" })
        guard !dimensions.isEmpty else { return name }
        let labels = dimensions.sorted { $0.0 < $1.0 }.map { name, value in
            let escaped = value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n")
            return "\(name)=\"\(escaped)\""
        }
        return name + "{" + labels.joined(separator: ",") + "}"
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        cell(label, dimensions) { CounterCell() }
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        aggregate ? cell(label, dimensions) { HistogramCell() } : cell(label, dimensions) { GaugeCell() }
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        cell(label, dimensions) { GaugeCell() }
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        cell(label, dimensions) { HistogramCell() }
    }

    public func destroyCounter(_ handler: any CounterHandler) {}
    public func destroyRecorder(_ handler: any RecorderHandler) {}
    public func destroyMeter(_ handler: any MeterHandler) {}
    public func destroyTimer(_ handler: any TimerHandler) {}
}

protocol SeriesCell: AnyObject, Sendable {
    func lines(_ key: String) -> String
}

final class CounterCell: CounterHandler, SeriesCell {
    private let value = Atomic<Int64>(0)
    func increment(by amount: Int64) { value.add(amount, ordering: .relaxed) }
    func reset() { value.store(0, ordering: .relaxed) }
    func lines(_ key: String) -> String { "counter \(key) \(value.load(ordering: .relaxed))\n" }
}

final class GaugeCell: RecorderHandler, MeterHandler, SeriesCell {
    private let value = Locked<Double>(0)
    func record(_ value: Int64) { self.value.withLock { $0 = Double(value) } }
    func record(_ value: Double) { self.value.withLock { $0 = value } }
    func set(_ value: Int64) { record(value) }
    func set(_ value: Double) { record(value) }
    func increment(by amount: Double) { value.withLock { $0 += amount } }
    func decrement(by amount: Double) { value.withLock { $0 -= amount } }
    func lines(_ key: String) -> String { "gauge \(key) \(value.withLock { $0 })\n" }
}

final class HistogramCell: RecorderHandler, TimerHandler, SeriesCell {
    private struct State {
        var counts = [Int64](repeating: 0, count: PoolMetrics.buckets.count)
        var sum = 0.0
        var count: Int64 = 0
    }

    private let state = Locked(State())

    func record(_ value: Int64) { record(Double(value)) }
    func record(_ value: Double) {
        state.withLock { state in
            if let bucket = PoolMetrics.buckets.firstIndex(where: { value <= $0 }) { state.counts[bucket] += 1 }
            state.sum += value
            state.count += 1
        }
    }
    func recordNanoseconds(_ duration: Int64) { record(Double(duration) / 1e9) }

    func lines(_ key: String) -> String {
        let (name, labels) = PoolMetrics.split(key)
        // Rendered under the lock: a copy of the counts taken out of it would share their
        // buffer with the next `record` (copy-on-write), which ThreadSanitizer cannot follow.
        return state.withLock { state in
            var text = ""
            var cumulative: Int64 = 0
            for (bound, count) in zip(PoolMetrics.buckets, state.counts) {
                cumulative += count
                text += "histogram \(name)_bucket{\(PoolMetrics.join(labels, "le=\"\(bound)\""))} \(cumulative)\n"
            }
            text += "histogram \(name)_bucket{\(PoolMetrics.join(labels, "le=\"+Inf\""))} \(state.count)\n"
            text += "histogram \(name)_sum\(labels.isEmpty ? "" : "{\(labels)}") \(state.sum)\n"
            text += "histogram \(name)_count\(labels.isEmpty ? "" : "{\(labels)}") \(state.count)\n"
            return text
        }
    }
}

extension PoolMetrics {
    /// `name{labels}` into the name and the inside of the braces.
    static func split(_ key: String) -> (String, String) {
        guard let brace = key.firstIndex(of: "{") else { return (key, "") }
        return (String(key[..<brace]), String(key[key.index(after: brace)..<key.index(before: key.endIndex)]))
    }

    static func join(_ labels: String, _ extra: String) -> String {
        labels.isEmpty ? extra : labels + "," + extra
    }
}
