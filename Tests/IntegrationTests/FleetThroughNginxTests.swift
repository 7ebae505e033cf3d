import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The fleet registry through nginx. Two gateway hosts (each its own nginx, responder pool and
/// stand-ins) on one real local Redis Cluster: the partitions split between every process of
/// both, an idle fleet costs what DEPLOY.md states, and when one host dies the other takes its
/// partitions. More processes than GATEWAY_PROCESSES says on one redis-server (as `spawn-fcgi
/// -F 4` with GATEWAY_PROCESSES=2): each gets its share, and idle workers search for nothing.
@Suite(.serialized) struct FleetThroughNginxTests {
    static let partitions = 16
    static let leaseSeconds = 2

    /// Each host: 2 processes × 8 workers (enough for every partition alone), queue mode.
    static let environment = QueueModeThroughNginxTests.queueEnvironment(partitions: partitions, workers: 8, ["QUEUE_LEASE": "\(leaseSeconds)"])

    /// The pid in each partition's holder (`host-PID-random-worker`), nil for a partition nobody holds.
    static func holders(_ cluster: RedisCluster) -> [pid_t?] {
        let port = cluster.masterPorts().first ?? 0
        return (0..<partitions).map { partition in
            let owner = (try? cluster.cli(port, ["-c", "GET", "{tgq:\(partition)}:owner"])) ?? ""
            let parts = owner.split(separator: "-")
            return parts.count >= 4 ? pid_t(parts[parts.count - 3]) : nil
        }
    }

    /// Calls of each command all masters served since their statistics were reset.
    static func calls(_ cluster: RedisCluster) throws -> [String: Int] {
        try cluster.masterPorts().map { commandCalls(inCommandstats: try cluster.cli($0, "INFO", "commandstats")) }
            .reduce(into: [:]) { total, calls in total.merge(calls, uniquingKeysWith: +) }
    }

    static func processed(_ hosts: [LocalStack]) -> [Int] {
        hosts.flatMap { $0.serviceRequests() }.filter { $0.service == "user_profile" }.compactMap { $0.request["update_id"] as? Int }
    }

    @Test func twoHostsSplitThePartitionsAndTheSurvivorTakesTheDeadHostsOver() throws {
        let cluster = try RedisCluster()
        var hosts: [LocalStack] = []
        defer {
            for host in hosts { try? host.stop() }
            try? cluster.stop()
        }
        let environment = cluster.gatewayEnvironment.merging(Self.environment) { _, new in new }
        hosts.append(try LocalStack(processes: 2, threads: 4, standins: true, extraEnvironment: environment))
        hosts.append(try LocalStack(processes: 2, threads: 4, standins: true, extraEnvironment: environment))
        let (survivor, victim) = (hosts[0], hosts[1])
        let processes = hosts.flatMap(\.poolPIDs)

        // Four processes of 8 workers: 4 partitions each, whichever host started first.
        try waitUntil("each of the 4 processes holds 4 partitions", timeout: 20) {
            let held = Dictionary(grouping: Self.holders(cluster).compactMap { $0 }) { $0 }.mapValues(\.count)
            return Set(held.keys) == Set(processes) && held.values.allSatisfy { $0 == 4 }
        }

        // Idle: what each process costs Redis, with nothing to do.
        sleep(2)
        for port in cluster.masterPorts() { try cluster.cli(port, "CONFIG", "RESETSTAT") }
        let idleSeconds = 5
        sleep(UInt32(idleSeconds))
        let idle = try Self.calls(cluster)
        let beats = Double(idleSeconds) / (Double(Self.leaseSeconds) / 3)
        // Calls made by the gateway (the rest are the commands inside its scripts).
        let made = ["evalsha", "xreadgroup", "exists"].reduce(0) { $0 + (idle[$1] ?? 0) }
        print(
            "fleet of 2 hosts x 2 processes, 16 partitions, idle \(idleSeconds) s: \(idle["evalsha"] ?? 0) scripts, "
                + "\(idle["xreadgroup"] ?? 0) blocked reads, \(idle["exists"] ?? 0) partition searches = "
                + "\(String(format: "%.1f", Double(made) / Double(processes.count * idleSeconds))) calls a second per process "
                + "(heartbeats every \(Self.leaseSeconds * 1000 / 3) ms; all commands, inside scripts too: \(idle.sorted { $0.key < $1.key }))")
        // Per heartbeat: a renewal per held partition and one registration per process; a
        // blocked read a second per holding worker. No partition search at all.
        let scripts = Double(Self.partitions + processes.count) * beats
        #expect(Double(idle["evalsha"] ?? 0) <= scripts * 1.3, "\(idle), expected about \(Int(scripts)) scripts")
        #expect(Double(idle["xreadgroup"] ?? 0) <= Double(Self.partitions * idleSeconds) * 1.3, "\(idle)")
        #expect(idle["exists"] == nil, "nobody looks for partitions while every process holds its share")

        // Updates through both hosts' nginx, each processed once, wherever its partition lives.
        var id = 0
        for user in 0..<60 {
            id += 1
            #expect(try hosts[user % 2].post(RedisClusterTests.update(id, user: Int64(7_100_000 + user), text: "/start")).status == 200)
        }
        try waitUntil("every update is processed", timeout: 30) { Self.processed(hosts).count >= 60 }
        // ...and finished: an update whose worker is killed after its service call and before
        // its entry is acknowledged is processed again by the survivor (at least once, by
        // design). This test is about the takeover, so the kill comes once nothing is in flight.
        try waitUntil("every entry is acknowledged", timeout: 10) {
            (try? survivor.metric("telegram_gateway_queue_backlog_entries")) == 0
        }

        // One host dies (both its processes SIGKILLed: no hand-over, no leaving the fleet).
        let killedAt = monotonicNow()
        for pid in victim.poolPIDs { kill(pid, SIGKILL) }
        try waitUntil("the survivor holds every partition", timeout: Double(Self.leaseSeconds) + 10) {
            let held = Self.holders(cluster)
            return held.allSatisfy { $0.map(survivor.poolPIDs.contains) ?? false }
        }
        let takeover = monotonicNow() - killedAt
        let shares = Dictionary(grouping: Self.holders(cluster).compactMap { $0 }) { $0 }.mapValues(\.count)
        print("one host killed: the survivor's 2 processes hold \(shares.values.sorted()) partitions \(String(format: "%.1f", takeover)) s later")
        // The lease, then the survivor's next heartbeat and look.
        #expect(takeover <= Double(Self.leaseSeconds) + 3)
        #expect(shares.values.sorted() == [8, 8])

        for user in 0..<40 {
            id += 1
            #expect(try survivor.post(RedisClusterTests.update(id, user: Int64(7_200_000 + user), text: "/start")).status == 200)
        }
        try waitUntil("the survivor processes every update", timeout: 30) { Self.processed(hosts).count >= 100 }
        sleep(1)
        let ids = Self.processed(hosts)
        #expect(ids.count == 100 && Set(ids).count == 100, "each update once: \(ids.count) calls, \(Set(ids).count) distinct")
    }

    @Test func processesBeyondGatewayProcessesShareThePartitionsAndIdleWithoutSearching() throws {
        try withStack(processes: 4, threads: 2, redis: (password: nil, useSocket: true), environment: ["GATEWAY_PROCESSES": "2"]) { stack, redis in
            let redis = try #require(redis)
            let owners = (0..<16).map { "{tgq:\($0)}:owner" }
            // The first two take 8 each (GATEWAY_PROCESSES' share) and hand half back once the
            // registry lists all four.
            try waitUntil("each of the 4 processes holds 4 partitions", timeout: 20) {
                let held = ((try? redis.cli(["MGET"] + owners)) ?? "").split(whereSeparator: \.isNewline)
                let pids = held.compactMap { owner in stack.poolPIDs.first { owner.contains("-\($0)-") } }
                return pids.count == 16 && Dictionary(grouping: pids) { $0 }.values.allSatisfy { $0.count == 4 } && Set(pids).count == 4
            }
            sleep(1)
            _ = try redis.cli("CONFIG", "RESETSTAT")
            sleep(5)
            let calls = commandCalls(inCommandstats: try redis.cli("INFO", "commandstats"))
            let scripts = calls["evalsha"] ?? 0
            print(
                "idle, 4 processes x 16 workers, 16 partitions, 5 s: \(scripts) scripts (renewals and registrations), \(calls["exists"] ?? 0) partition reads"
            )
            // A heartbeat a second per process: its renewals (16 in all) and its registration.
            // Before the registry each of the 48 workers beyond the partitions tried a take
            // script on every partition every second (~2,500), then read which were free (~100).
            #expect(scripts <= (16 + 4) * 5 * 13 / 10, "\(calls)")
            #expect(calls["exists"] == nil, "no search while every process holds its share: \(calls)")
            let held = try redis.cli(["MGET"] + owners).split(whereSeparator: \.isNewline).map(String.init)
            #expect(held.count == 16 && Set(held).count == 16, "each partition held by exactly one worker: \(held)")
        }
    }

    @Test func streamsALargerCountLeftAreDrainedInSyncModeThenRetired() throws {
        try withStack(
            processes: 1, threads: 2, redis: (nil, true), standins: true,
            environment: ["QUEUE_PARTITIONS": "4", "QUEUE_WORKERS": "4", "OUTGOING_PER_SECOND": "0"]
        ) { stack, redis in
            let redis = try #require(redis)
            try stack.control(["service": "user_profile", "delay_ms": 1500])
            // What a fleet with QUEUE_PARTITIONS=16 left: an update waiting in stream 13, which
            // no user maps to with 4.
            _ = try redis.cli("SET", "{tgfleet}:partitions", "16")
            _ = try redis.cli(
                "XADD", "{tgq:13}:stream", "*", "u",
                String(decoding: RedisClusterTests.update(77, user: 7_300_013, text: "/start").utf8, as: UTF8.self),
                "a", "0")

            try waitUntil("the worker on stream 13 calls the service", timeout: 15) { !stack.serviceRequests().isEmpty }
            let status = try ChildProcess.runCapturing(
                GatewayCtlTests.binary, ["queue-status", "--env-file", stack.directory.appending(path: ".env").path])
            #expect(status.output.contains("retiring: partitions 4-15 are above QUEUE_PARTITIONS=4"), "\(status.output)")
            #expect(status.output.contains("fleet: 1 processes, 4 workers"), "\(status.output)")
            let metrics = try stack.metrics()
            #expect(MetricsExpositionTests.total(metrics, "telegram_gateway_queue_retiring_entries") == 1)
            #expect(MetricsExpositionTests.total(metrics, "telegram_gateway_fleet_processes") == 1)

            // Processed in sync mode by the workers, then the streams above 4 are retired.
            try waitUntil("the streams above 4 are retired", timeout: 20) { (try? redis.cli("GET", "{tgfleet}:partitions")) == "4" }
            #expect(stack.serviceRequests().compactMap { $0.request["update_id"] as? Int } == [77])
            #expect(try redis.cli("XLEN", "{tgq:13}:stream") == "0")
            let after = try ChildProcess.runCapturing(
                GatewayCtlTests.binary, ["queue-status", "--env-file", stack.directory.appending(path: ".env").path])
            #expect(!after.output.contains("retiring"), "\(after.output)")
            #expect(stack.gatewayLog.contains("retired partitions drained"))
        }
    }
}
