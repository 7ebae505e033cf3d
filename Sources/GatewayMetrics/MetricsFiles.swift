import GatewayRuntime

#if canImport(Glibc)
import Glibc
#endif

/// The per-process snapshot files in the pool's metrics folder, and their sum.
public struct MetricsFiles: Sendable {
    public let directory: String

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
        let path = "\(directory)/\(pid).metrics"
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { return }
        let bytes = Array(snapshot.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        if written == bytes.count { rename(temporary, path) } else { unlink(temporary) }
    }

    /// One process's file: its series by kind.
    public struct ProcessSnapshot: Sendable {
        public let pid: pid_t
        public let isAlive: Bool
        /// Series name with labels → (kind, value).
        public let series: [String: (kind: String, value: Double)]
    }

    /// Every process's latest snapshot, dead ones included.
    public func processes() -> [ProcessSnapshot] {
        names().filter { $0.hasSuffix(".metrics") }.compactMap { name in
            guard let pid = pid_t(name.dropLast(".metrics".count)), let text = readFile(directory + "/" + name) else { return nil }
            var series: [String: (kind: String, value: Double)] = [:]
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: " ")
                guard parts.count == 3, let value = Double(parts[2]) else { continue }
                series[String(parts[1])] = (String(parts[0]), value)
            }
            return ProcessSnapshot(pid: pid, isAlive: kill(pid, 0) == 0, series: series)
        }.sorted { $0.pid < $1.pid }
    }

    /// The pool's metrics in Prometheus' text format: counters and histograms summed over every
    /// file, gauges over the files of live processes.
    public func render() -> String {
        var totals: [String: Double] = [:]
        var kinds: [String: String] = [:]
        for process in processes() {
            for (series, entry) in process.series {
                if entry.kind == "gauge" && !process.isAlive { continue }
                totals[series, default: 0] += entry.value
                let (family, _) = PoolMetrics.split(series)
                kinds[entry.kind == "histogram" ? Self.histogramFamily(family) : family] = entry.kind
            }
        }
        var output = ""
        var typed = Set<String>()
        for series in totals.keys.sorted() {
            let (family, _) = PoolMetrics.split(series)
            let base = kinds[family] != nil ? family : Self.histogramFamily(family)
            if let kind = kinds[base], typed.insert(base).inserted { output += "# TYPE \(base) \(kind)\n" }
            let value = totals[series] ?? 0
            output += "\(series) \(value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value))\n"
        }
        return output
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
