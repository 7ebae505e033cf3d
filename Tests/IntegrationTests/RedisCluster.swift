import Foundation
import GatewayCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real Redis Cluster for one test: `masters` redis-servers with `--cluster-enabled yes` and
/// a replica each, joined by `redis-cli --cluster create`, on free loopback ports (and their
/// bus ports, +10000), with a short `cluster-node-timeout` so a failover takes seconds.
/// `stop()` stops exactly the processes it started.
final class RedisCluster {
    struct Node {
        let port: Int
        var pid: pid_t
    }

    let directory: URL
    private(set) var nodes: [Node] = []
    let nodeTimeoutMilliseconds: Int
    /// `requirepass` (and `masterauth`) on every node, when given.
    let password: String?

    init(masters: Int = 3, nodeTimeoutMilliseconds: Int = 1000, password: String? = nil) throws {
        self.nodeTimeoutMilliseconds = nodeTimeoutMilliseconds
        self.password = password
        directory = FileManager.default.temporaryDirectory.appending(path: "tg-cluster-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let count = masters * 2
        let base = try Self.freePortsWithBus(count: count)
        do {
            for port in base..<(base + count) {
                try FileManager.default.createDirectory(at: directory.appending(path: "\(port)"), withIntermediateDirectories: true)
                nodes.append(Node(port: port, pid: try spawn(port: port)))
            }
            for index in nodes.indices { try waitUntilAnswering(index) }
            let addresses = nodes.map { "127.0.0.1:\($0.port)" }
            try ChildProcess.run(
                "/usr/bin/redis-cli", authentication + ["--cluster", "create"] + addresses + ["--cluster-replicas", "1", "--cluster-yes"])
            try waitUntil("the cluster is up on every node", timeout: 20) { self.isServing && self.masterPorts().count == masters }
            // A replica that never completed its first sync cannot take over: a failover test
            // needs every replica in sync first.
            let replicas = Set(nodes.map(\.port)).subtracting(masterPorts())
            try waitUntil("every replica is in sync", timeout: 20) {
                replicas.allSatisfy { (try? self.cli($0, "INFO", "replication"))?.contains("master_link_status:up") == true }
            }
        } catch {
            try? stop()
            throw error
        }
    }

    /// Waits until the node at `index` answers; when it does not, says whether it exited and
    /// what its log says (a port another process took between the check and the start, say).
    private func waitUntilAnswering(_ index: Int) throws {
        let node = nodes[index]
        do {
            try waitUntil("node \(node.port) answers") { (try? self.cli(node.port, "PING")) == "PONG" }
        } catch {
            let exited = ChildProcess.reapIfExited(node.pid)
            if exited { nodes[index].pid = 0 }
            let log = (try? String(contentsOf: directory.appending(path: "\(node.port)/redis.log"), encoding: .utf8)) ?? ""
            throw StackError("node \(node.port) does not answer (\(exited ? "exited" : "still running")); its log: \(log.suffix(800))")
        }
    }

    private func spawn(port: Int) throws -> pid_t {
        let folder = directory.appending(path: "\(port)")
        var arguments = [
            "--port", "\(port)", "--bind", "127.0.0.1", "--dir", folder.path, "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "\(nodeTimeoutMilliseconds)",
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no", "--loglevel", "warning",
            // A replica's first sync at once (the default waits 5 s for more replicas).
            "--repl-diskless-sync-delay", "0",
            "--logfile", folder.appending(path: "redis.log").path,
        ]
        if let password { arguments += ["--requirepass", password, "--masterauth", password] }
        return try ChildProcess.spawn("/usr/bin/redis-server", arguments)
    }

    private var authentication: [String] { password.map { ["--no-auth-warning", "-a", $0] } ?? [] }

    /// What the gateway's configuration needs: two seeds (it learns the rest), and no single server.
    var gatewayEnvironment: [String: String] {
        var environment = [
            "REDIS_CLUSTER_NODES": nodes.prefix(2).map { "127.0.0.1:\($0.port)" }.joined(separator: ","), "REDIS_HOST": "", "REDIS_PORT": "",
        ]
        if let password { environment["REDIS_PASSWORD"] = password }
        return environment
    }

    /// The same for a client made in the test: its first node as the one seed.
    var clientSettings: GatewayConfig.RedisSettings {
        var settings = GatewayConfig.RedisSettings(
            host: "", port: 1, socket: nil, password: password.map(Secret.init), database: 0, connectTimeoutSeconds: 1,
            commandTimeoutSeconds: 1)
        settings.clusterNodes = nodes.prefix(1).map { GatewayConfig.HostPort(host: "127.0.0.1", port: $0.port) }
        return settings
    }

    @discardableResult
    func cli(_ port: Int, _ arguments: String...) throws -> String {
        try cli(port, arguments)
    }

    @discardableResult
    func cli(_ port: Int, _ arguments: [String]) throws -> String {
        try ChildProcess.run("/usr/bin/redis-cli", authentication + ["-p", "\(port)", "--no-raw"] + arguments)
            .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\"", with: "")
    }

    /// One command as `redis-cli --raw` prints it, sent to the node on `port` and redirected
    /// (`-c`) to where its key lives.
    func rawCLI(_ port: Int, _ arguments: [String]) throws -> String {
        try ChildProcess.run("/usr/bin/redis-cli", authentication + ["--raw", "-c", "-p", "\(port)"] + arguments)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Kills every node at once, as a power cut would.
    func killAll() {
        for node in nodes { kill(port: node.port) }
    }

    /// Starts every killed node again from its files (nodes.conf, the append-only file) and
    /// waits until the cluster is whole.
    func restart() throws {
        for index in nodes.indices where nodes[index].pid == 0 { nodes[index].pid = try spawn(port: nodes[index].port) }
        let masters = nodes.count / 2
        try waitUntil("the cluster is up again on every node", timeout: 30) { self.isServing && self.masterPorts().count == masters }
    }

    /// Every node that is up says the cluster is ok: each serves its slots (a node that has not
    /// heard of a promotion yet still answers CLUSTERDOWN).
    var isServing: Bool {
        nodes.allSatisfy { $0.pid == 0 || (try? cli($0.port, "CLUSTER", "INFO"))?.contains("cluster_state:ok") == true }
    }

    /// `CLUSTER NODES` as seen by the node on `port`: each node's port, id, and whether it is a
    /// master (and not failed).
    func view(from port: Int) -> [(port: Int, id: String, master: Bool, failed: Bool)] {
        guard let text = try? ChildProcess.run("/usr/bin/redis-cli", authentication + ["-p", "\(port)", "CLUSTER", "NODES"]) else { return [] }
        return text.split(whereSeparator: \.isNewline).compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 8, let address = fields[1].split(separator: "@").first,
                let nodePort = address.split(separator: ":").last.flatMap({ Int($0) })
            else { return nil }
            let flags = fields[2]
            return (nodePort, String(fields[0]), flags.contains("master"), flags.contains("fail"))
        }
    }

    /// The ports of the masters that are up, as a live node sees them.
    func masterPorts() -> [Int] {
        guard let live = nodes.first(where: { $0.pid != 0 }) else { return [] }
        return view(from: live.port).filter { $0.master && !$0.failed }.map(\.port).sorted()
    }

    /// The master on `victim` is replaced: a live node lists as many masters as the cluster was
    /// made with, none of them `victim`. One listing answers both: the node flags `victim`
    /// `fail?` a node timeout after it stopped answering, so of two listings a moment apart the
    /// first may still count it among three masters and the second leave it out, before any
    /// replica was promoted.
    func hasReplaced(master victim: Int) -> Bool {
        let masters = masterPorts()
        return masters.count == nodes.count / 2 && !masters.contains(victim)
    }

    /// The port of the master serving `slot`, from `CLUSTER NODES`' slot ranges.
    func master(ofSlot slot: Int) throws -> Int {
        let live = try #require(nodes.first { $0.pid != 0 })
        let text = try ChildProcess.run("/usr/bin/redis-cli", authentication + ["-p", "\(live.port)", "CLUSTER", "NODES"])
        for line in text.split(whereSeparator: \.isNewline) {
            let fields = line.split(separator: " ")
            guard fields.count > 8, fields[2].contains("master"), !fields[2].contains("fail"),
                let port = fields[1].split(separator: "@").first?.split(separator: ":").last.flatMap({ Int($0) })
            else { continue }
            for range in fields[8...] where !range.hasPrefix("[") {
                let bounds = range.split(separator: "-").compactMap { Int($0) }
                if let low = bounds.first, slot >= low && slot <= (bounds.last ?? low) { return port }
            }
        }
        throw StackError("no master serves slot \(slot)")
    }

    /// The slot of `key`, as the cluster computes it.
    func slot(of key: String) throws -> Int {
        let live = try #require(nodes.first { $0.pid != 0 })
        return try #require(Int(try cli(live.port, "CLUSTER", "KEYSLOT", key).replacingOccurrences(of: "(integer) ", with: "")))
    }

    /// Marks `slot` as moving from the master on `from` to the one on `to` (IMPORTING on the
    /// target, then MIGRATING on the source), as `redis-cli --cluster reshard` does.
    func startMigration(_ slot: Int, from: Int, to: Int, ids: [Int: String]) throws {
        try cli(to, "CLUSTER", "SETSLOT", "\(slot)", "IMPORTING", try #require(ids[from]))
        try cli(from, "CLUSTER", "SETSLOT", "\(slot)", "MIGRATING", try #require(ids[to]))
    }

    /// Ends a migration: the slot is the target's, told to the target first (it bumps its
    /// configuration epoch, so its claim wins over the source's in the gossip), then the
    /// source, then the other masters; waits until every node sees it.
    func finishMigration(_ slot: Int, from: Int, to: Int, ids: [Int: String]) throws {
        let target = try #require(ids[to])
        for port in [to, from] + masterPorts().filter({ $0 != to && $0 != from }) {
            try cli(port, "CLUSTER", "SETSLOT", "\(slot)", "NODE", target)
        }
        try waitUntil("every node sees slot \(slot) on \(to)", timeout: 10) {
            self.nodes.filter { $0.pid != 0 }.allSatisfy { node in
                (try? self.cli(node.port, "CLUSTER", "NODES"))?.split(whereSeparator: \.isNewline).contains { line in
                    line.contains(":\(to)@") && Self.ranges(of: line).contains { $0.contains(slot) }
                } == true
            }
        }
    }

    /// A whole (empty) slot moved: a migration with no keys to move.
    func moveSlot(_ slot: Int, from: Int, to: Int, ids: [Int: String]) throws {
        try startMigration(slot, from: from, to: to, ids: ids)
        try finishMigration(slot, from: from, to: to, ids: ids)
    }

    /// The slot ranges of a `CLUSTER NODES` line.
    static func ranges(of line: Substring) -> [ClosedRange<Int>] {
        line.split(separator: " ").dropFirst(8).compactMap { range in
            let bounds = range.split(separator: "-").compactMap { Int($0) }
            guard let low = bounds.first, !range.hasPrefix("[") else { return nil }
            return low...(bounds.last ?? low)
        }
    }

    /// Kills the node on `port` at once, as a crash would.
    func kill(port: Int) {
        guard let index = nodes.firstIndex(where: { $0.port == port }), nodes[index].pid != 0 else { return }
        Glibc.kill(nodes[index].pid, SIGKILL)
        ChildProcess.waitForExit(nodes[index].pid)
        nodes[index].pid = 0
    }

    /// Calls of every command the node on `port` served since its stats were reset.
    func commandCalls(port: Int) throws -> Int {
        IntegrationTests.commandCalls(inCommandstats: try cli(port, "INFO", "commandstats")).values.reduce(0, +)
    }

    func stop() throws {
        var lingered: [Int] = []
        for index in nodes.indices where nodes[index].pid != 0 {
            Glibc.kill(nodes[index].pid, SIGTERM)
        }
        for index in nodes.indices where nodes[index].pid != 0 {
            let pid = nodes[index].pid
            if (try? waitUntil("redis-server exits") { ChildProcess.reapIfExited(pid) }) == nil {
                Glibc.kill(pid, SIGKILL)
                ChildProcess.waitForExit(pid)
                lingered.append(nodes[index].port)
            }
            nodes[index].pid = 0
        }
        if ProcessInfo.processInfo.environment["KEEP_CLUSTER"] == nil { try? FileManager.default.removeItem(at: directory) }
        if !lingered.isEmpty { throw StackError("redis-servers lingered after SIGTERM: \(lingered)") }
    }

    /// `count` consecutive free loopback ports whose cluster bus ports (+10000) are free too,
    /// all below the kernel's range for outgoing connections' ports (32768-60999 by default), so
    /// that no connection of the suite can take one between this check and the node's start.
    static func freePortsWithBus(count: Int) throws -> Int {
        let outgoingFrom = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
            .split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) }
        let highest = (outgoingFrom ?? 32768) - 10_000 - count
        // A kernel whose range starts too low for that: anywhere, as before.
        let bases = highest > 10_000 ? 10_000...highest : 20_000...45_000
        for _ in 0..<100 {
            let base = Int.random(in: bases)
            let ports = Array(base..<(base + count)) + (base..<(base + count)).map { $0 + 10_000 }
            if ports.allSatisfy({ (try? LocalStack.bindLoopback(port: $0)) != nil }) { return base }
        }
        throw StackError("no free range of \(count) ports with bus ports")
    }
}
