import GatewayCore

#if canImport(Glibc)
import Glibc
#endif

/// The pool at a glance, as PHP-FPM's status page shows it: each live process with its threads,
/// busy and idle, and the requests it accepted; totals; and the supervisor's restarts.
public enum PoolStatus {
    public static let threads = GatewayMetric.threads
    public static let busy = GatewayMetric.busyThreads
    public static let requests = GatewayMetric.requests
    public static let restarts = GatewayMetric.restarts
    public static let processes = GatewayMetric.processes

    /// JSON for `/telegram-gateway/status`.
    public static func render(_ files: MetricsFiles) -> String {
        let snapshots = files.processes()
        var accepted = 0.0
        var inFlight = 0.0
        var restarts = 0.0
        var entries: [String] = []
        for snapshot in snapshots {
            let value = { (name: String) in snapshot.series[name]?.value }
            accepted += value(requests) ?? 0
            restarts += value(Self.restarts) ?? 0
            guard snapshot.isAlive, let threads = value(threads) else { continue }
            let busy = value(busy) ?? 0
            inFlight += busy
            entries.append(
                #"{"pid":\#(snapshot.pid),"threads":\#(Int(threads)),"busy_threads":\#(Int(busy)),"idle_threads":\#(Int(threads - busy)),"accepted_requests":\#(Int(value(requests) ?? 0))}"#
            )
        }
        return
            #"{"processes":[\#(entries.joined(separator: ","))],"accepted_requests":\#(Int(accepted)),"in_flight_requests":\#(Int(inFlight)),"restarts":\#(Int(restarts))}"#
    }

    /// The supervisor's own file: how many children it runs and has restarted, and whether it
    /// refused the last reload.
    public static func writeSupervisor(_ files: MetricsFiles, processes: Int, restarts: Int, lastReloadFailed: Bool) {
        files.write(
            "gauge \(Self.processes) \(processes)\ncounter \(Self.restarts) \(restarts)\n"
                + "gauge \(GatewayMetric.lastReloadFailed) \(lastReloadFailed ? 1 : 0)\n")
    }
}
