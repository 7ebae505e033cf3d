import GatewayCore
import GatewayRuntime

#if canImport(Glibc)
import Glibc
#endif

/// The per-process snapshot files in the pool's metrics folder, and their sum.
///
/// A process's file is named by its pid and start time (`PID-START.metrics`), so a pid the
/// kernel gives again never takes over a dead process's file or revives its gauges. Files of
/// processes that exited are folded into `retired.metrics` (their counters and histograms
/// summed; their gauges dropped) and removed, so the folder stays bounded however often
/// processes are recycled, and counters never go backwards.
public struct MetricsFiles: Sendable {
    public let directory: String
    static let retiredName = "retired.metrics"

    public init(directory: String) {
        self.directory = directory
    }

    /// Creates the folder and removes the files of an earlier run (the supervisor, at start).
    public func prepare() {
        createDirectory()
        for name in names() where name.hasSuffix(".metrics") { unlink(directory + "/" + name) }
    }

    /// Creates the folder if it is missing (every process, at start).
    public func createDirectory() {
        mkdir(directory, 0o750)
    }

    /// Replaces this process's file (write, then rename: readers never see half a file).
    public func write(_ snapshot: String, pid: pid_t = getpid()) {
        write(snapshot, to: "\(directory)/\(pid)-\(Self.startTime(of: pid) ?? 0).metrics")
    }

    private func write(_ text: String, to path: String) {
        writeFileAtomically(text, to: path, mode: 0o640)
    }

    /// One process's file (or the retired processes' sum, pid 0): its series by kind.
    public struct ProcessSnapshot: Sendable {
        public let pid: pid_t
        public let isAlive: Bool
        /// Series name with labels → (kind, value).
        public let series: [String: (kind: String, value: Double)]
    }

    /// Every process's latest snapshot, dead ones included, and the retired processes' sum.
    public func processes() -> [ProcessSnapshot] {
        names().filter { $0.hasSuffix(".metrics") }.compactMap { name in
            guard let text = readFile(directory + "/" + name) else { return nil }
            let series = Self.parse(text)
            if name == Self.retiredName { return ProcessSnapshot(pid: 0, isAlive: false, series: series) }
            guard let (pid, started) = Self.identity(of: name) else { return nil }
            return ProcessSnapshot(pid: pid, isAlive: Self.isRunning(pid, startedAt: started), series: series)
        }.sorted { $0.pid < $1.pid }
    }

    /// Folds the files of processes that exited into `retired.metrics` and removes them. Any
    /// process may do it (on a scrape, the supervisor when a child exits): a lock file keeps
    /// two from folding at once.
    public func foldExited() {
        let lock = open(directory + "/.fold.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard lock >= 0 else { return }
        defer { close(lock) }
        guard flock(lock, LOCK_EX) == 0 else { return }
        defer { flock(lock, LOCK_UN) }
        var exited: [String] = []
        var retired = readFile(directory + "/" + Self.retiredName).map(Self.parse) ?? [:]
        for name in names() where name.hasSuffix(".metrics") && name != Self.retiredName {
            guard let (pid, started) = Self.identity(of: name), !Self.isRunning(pid, startedAt: started),
                let text = readFile(directory + "/" + name)
            else { continue }
            for (series, entry) in Self.parse(text) where entry.kind != "gauge" {
                retired[series] = (entry.kind, (retired[series]?.value ?? 0) + entry.value)
            }
            exited.append(name)
        }
        guard !exited.isEmpty else { return }
        // The sum is written before the files it holds are removed: a crash in between counts
        // them twice at worst, never loses them.
        write(
            retired.keys.sorted().map { "\(retired[$0]?.kind ?? "counter") \($0) \(Self.format(retired[$0]?.value ?? 0))\n" }.joined(),
            to: directory + "/" + Self.retiredName)
        for name in exited { unlink(directory + "/" + name) }
    }

    /// The pool's metrics in Prometheus' text format: counters and histograms summed over every
    /// file, the retired processes' included; gauges over the files of live processes. Each
    /// family once, with its `# HELP` and `# TYPE`, its series together; a histogram's buckets
    /// in increasing `le`, then its `_sum` and `_count`.
    public func render() -> String {
        foldExited()
        var totals: [String: Double] = [:]
        var kinds: [String: String] = [:]
        for process in processes() {
            for (series, entry) in process.series {
                if entry.kind == "gauge" && !process.isAlive { continue }
                totals[series, default: 0] += entry.value
                kinds[Self.family(of: series, kind: entry.kind)] = entry.kind
            }
        }
        let ordered = totals.keys.map { series -> (family: String, order: SeriesOrder, series: String) in
            let (name, labels) = PoolMetrics.split(series)
            let family = kinds[name] != nil ? name : Self.histogramFamily(name)
            return (family, SeriesOrder(name: name, family: family, labels: labels), series)
        }.sorted { ($0.family, $0.order) < ($1.family, $1.order) }
        var output = ""
        var current = ""
        for (family, _, series) in ordered {
            if family != current {
                current = family
                let help = GatewayMetric.help[family] ?? "\(family) (no description)."
                output += "# HELP \(family) \(help)\n# TYPE \(family) \(kinds[family] ?? "untyped")\n"
            }
            output += "\(series) \(Self.format(totals[series] ?? 0))\n"
        }
        return output
    }

    /// Where a series goes within its family: by its labels other than `le`, then `_bucket`
    /// series by their bound (`+Inf` last), `_sum`, `_count`.
    struct SeriesOrder: Comparable {
        var labels: String
        var part: Int
        var bound: Double

        init(name: String, family: String, labels: String) {
            var others: [Substring] = []
            var bound = -Double.infinity
            for label in Self.labels(labels) {
                if label.hasPrefix("le=\"") {
                    bound = Double(label.dropFirst(4).dropLast()) ?? .infinity
                } else {
                    others.append(label)
                }
            }
            self.labels = others.joined(separator: ",")
            self.bound = bound
            part = name == family ? 0 : name.hasSuffix("_bucket") ? 0 : name.hasSuffix("_sum") ? 1 : 2
        }

        static func < (left: SeriesOrder, right: SeriesOrder) -> Bool {
            (left.labels, left.part, left.bound) < (right.labels, right.part, right.bound)
        }

        /// `a="x",b="y"` split at the commas between labels (not those inside quoted values).
        static func labels(_ text: String) -> [Substring] {
            var result: [Substring] = []
            var start = text.startIndex
            var quoted = false
            var escaped = false
            var index = text.startIndex
            while index < text.endIndex {
                let character = text[index]
                if escaped {
                    escaped = false
                } else if character == "\\" {
                    escaped = true
                } else if character == "\"" {
                    quoted.toggle()
                } else if character == ",", !quoted {
                    result.append(text[start..<index])
                    start = text.index(after: index)
                }
                index = text.index(after: index)
            }
            if start < text.endIndex { result.append(text[start...]) }
            return result
        }
    }

    private static func family(of series: String, kind: String) -> String {
        let (name, _) = PoolMetrics.split(series)
        return kind == "histogram" ? histogramFamily(name) : name
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    private static func parse(_ text: String) -> [String: (kind: String, value: Double)] {
        var series: [String: (kind: String, value: Double)] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 3, let value = Double(parts[2]) else { continue }
            series[String(parts[1])] = (String(parts[0]), value)
        }
        return series
    }

    /// `PID-START.metrics` into the pid and its start time.
    private static func identity(of name: String) -> (pid_t, UInt64)? {
        let parts = name.dropLast(".metrics".count).split(separator: "-")
        guard parts.count == 2, let pid = pid_t(parts[0]), let started = UInt64(parts[1]) else { return nil }
        return (pid, started)
    }

    /// Whether `pid` runs and is the process that started at `startedAt` (not a later one the
    /// kernel gave the same pid).
    static func isRunning(_ pid: pid_t, startedAt: UInt64) -> Bool {
        kill(pid, 0) == 0 && startTime(of: pid) == startedAt
    }

    /// The process's start time in clock ticks since boot (`/proc/PID/stat`, field 22).
    static func startTime(of pid: pid_t) -> UInt64? {
        guard let stat = readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }

    private static func histogramFamily(_ name: String) -> String {
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) { return String(name.dropLast(suffix.count)) }
        return name
    }

    private func names() -> [String] {
        guard let folder = opendir(directory) else { return [] }
        defer { closedir(folder) }
        var result: [String] = []
        while let entry = readdir(folder) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            result.append(name)
        }
        return result
    }
}
