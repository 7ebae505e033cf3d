import GatewayCore

#if canImport(Glibc)
import Glibc
#endif

/// A thread's way to Redis: one ``RedisNode`` for a single server, or, for a Redis Cluster
/// (`REDIS_CLUSTER_NODES`), one per node, opened on first use, with the cluster's slot map.
///
/// In a cluster each command goes to the master of its key's slot (the key's hash tag: every
/// script's keys share one, so each script runs on one node). The map is read with
/// `CLUSTER SLOTS` from any node that answers (the seeds first) at the first call, after a
/// `MOVED` and after a node failed; `ASK` (a slot being migrated) sends `ASKING` and the command
/// to the node named; `TRYAGAIN` and `CLUSTERDOWN` (a migration or a failover under way) and a
/// node going away are retried within the deadline, a few times, then reported as Redis being
/// unavailable: the callers then behave as with Redis down (sync mode fails open, the queue's
/// door answers 503) and recover by themselves once the cluster has promoted a replica.
///
/// Owned by one thread, like the connections in it.
final class RedisConnection {
    struct Settings {
        var host: String
        var port: Int
        var socket: String?
        var password: Secret?
        var database: Int
        var connectTimeoutSeconds: Double
        var commandTimeoutSeconds: Double
        /// Seed nodes of a cluster; empty for one server.
        var clusterNodes: [GatewayConfig.HostPort]

        /// The configured server, with the configured timeouts unless others are given.
        init(_ config: GatewayConfig.RedisSettings, connectTimeoutSeconds: Double? = nil, commandTimeoutSeconds: Double? = nil) {
            host = config.host
            port = config.port
            socket = config.socket
            password = config.password
            database = config.database
            self.connectTimeoutSeconds = connectTimeoutSeconds ?? config.connectTimeoutSeconds
            self.commandTimeoutSeconds = commandTimeoutSeconds ?? config.commandTimeoutSeconds
            clusterNodes = config.clusterNodes
        }

        /// The same settings for one node of the cluster.
        func node(_ address: GatewayConfig.HostPort) -> Settings {
            var settings = self
            settings.host = address.host
            settings.port = address.port
            settings.socket = nil
            settings.clusterNodes = []
            return settings
        }
    }

    private let settings: Settings
    private let clock: @Sendable () -> UInt64
    /// The single server's connection, or nil in a cluster.
    private let single: RedisNode?
    private var cluster: ClusterState

    /// Redirections one command may follow before it is reported as unavailable.
    static let maximumRedirections = 5

    init(settings: Settings, clock: @escaping @Sendable () -> UInt64) {
        self.settings = settings
        self.clock = clock
        single = settings.clusterNodes.isEmpty ? RedisNode(settings: settings, clock: clock) : nil
        cluster = ClusterState(seeds: settings.clusterNodes)
    }

    /// Commands go to a cluster's nodes by their keys' slots: one call may name one slot only.
    var isCluster: Bool { single == nil }

    var isConnected: Bool { single?.isConnected ?? cluster.nodes.values.contains { $0.isConnected } }

    /// Sends one command and returns its reply (a Redis error reply as `.error`); transport
    /// failures throw. See ``RedisNode/command(_:deadline:operation:)``.
    func command(_ arguments: [[UInt8]], deadline: Deadline = .distantFuture, operation: String? = nil) throws(StateStoreError) -> RedisReply {
        if let single { return try single.command(arguments, deadline: deadline, operation: operation) }
        return try routed(slot: ClusterSlots.slot(ofCommand: arguments), deadline: deadline) { node, asking throws(StateStoreError) in
            asking
                ? try node.commandAsking(arguments, deadline: deadline, operation: operation)
                : try node.command(arguments, deadline: deadline, operation: operation)
        }
    }

    /// A command routed by `key` although its arguments name none (`WAIT`: it waits for the
    /// replicas of the node that holds the key), given `allowance` seconds more than the
    /// command timeout.
    func command(_ arguments: [[UInt8]], deadline: Deadline, routedBy key: [UInt8], allowance: Double = 0) throws(StateStoreError)
        -> RedisReply
    {
        if let single { return try single.command(arguments, deadline: deadline, allowance: allowance) }
        // A command without keys is never redirected with ASK.
        return try routed(slot: ClusterSlots.slot(of: key), deadline: deadline) { node, _ throws(StateStoreError) in
            try node.command(arguments, deadline: deadline, allowance: allowance)
        }
    }

    func command(_ arguments: String...) throws(StateStoreError) -> RedisReply {
        try command(arguments.map { Array($0.utf8) })
    }

    /// Runs the call's script with FCALL (its library loaded on a node that lacks it) on the
    /// node of its keys.
    func evaluate(_ call: ScriptCall, deadline: Deadline = .distantFuture) throws(StateStoreError) -> RedisReply {
        if let single { return try single.evaluate(call, deadline: deadline) }
        return try routed(slot: call.slot, deadline: deadline) { node, asking throws(StateStoreError) in
            try node.evaluate(call, deadline: deadline, asking: asking)
        }
    }

    func evaluate(_ script: RedisScript, keys: [String], arguments: [[UInt8]], deadline: Deadline = .distantFuture) throws(StateStoreError)
        -> RedisReply
    {
        try evaluate(ScriptCall(script, keys: keys, arguments: arguments), deadline: deadline)
    }

    /// Runs each call: one round trip per node involved. Replies come back in the calls' order;
    /// error replies in place.
    func evaluateAll(_ calls: [ScriptCall], deadline: Deadline = .distantFuture) throws(StateStoreError) -> [RedisReply] {
        if let single { return try single.evaluateAll(calls, deadline: deadline) }
        return try grouped(slots: calls.map(\.slot), deadline: deadline) { node, indices throws(StateStoreError) in
            try node.evaluateAll(indices.map { calls[$0] }, deadline: deadline)
        } one: { index throws(StateStoreError) in
            try evaluate(calls[index], deadline: deadline)
        }
    }

    /// Writes every command, then reads every reply: one round trip per node involved.
    func pipeline(_ commands: [[[UInt8]]], deadline: Deadline, operation: String = "pipeline") throws(StateStoreError) -> [RedisReply] {
        if let single { return try single.pipeline(commands, deadline: deadline, operation: operation) }
        return try grouped(slots: commands.map(ClusterSlots.slot(ofCommand:)), deadline: deadline) { node, indices throws(StateStoreError) in
            try node.pipeline(indices.map { commands[$0] }, deadline: deadline, operation: operation)
        } one: { index throws(StateStoreError) in
            try command(commands[index], deadline: deadline, operation: operation)
        }
    }

    /// Drops every connection; the next call reconnects after the backoff.
    func disconnect() {
        single?.disconnect()
        for node in cluster.nodes.values { node.disconnect() }
    }

    // MARK: The cluster

    /// Runs `send` on the node serving `slot` (any node for nil), following `MOVED` and `ASK`
    /// at once, retrying `TRYAGAIN` and `CLUSTERDOWN` after short pauses (10, 20 and 40 ms, then
    /// it gives up), and, when a node fails, reading the map again: a slot that moved (a replica was
    /// promoted) is tried on its new master; a slot still on the failed node fails now, so the
    /// caller fails open at once instead of waiting out the election.
    private func routed(
        slot: Int?, deadline: Deadline, _ send: (RedisNode, _ asking: Bool) throws(StateStoreError) -> RedisReply
    ) throws(StateStoreError) -> RedisReply {
        var asked: GatewayConfig.HostPort?
        var moved: GatewayConfig.HostPort?
        var lastError = StateStoreError.unavailable
        var pauses = 0
        var refreshedAfterFailure = false
        var failedMaster: GatewayConfig.HostPort?
        for _ in 0...Self.maximumRedirections {
            let address: GatewayConfig.HostPort
            if let target = asked ?? moved {
                address = target
                moved = nil
            } else {
                guard let known = try owner(of: slot, deadline: deadline) else { break }
                address = known
            }
            let reply: RedisReply
            do {
                reply = try send(node(address), asked != nil)
            } catch {
                lastError = error
                asked = nil
                if error == .unavailable, failedMaster == nil, let slot, let replica = cluster.topology.replica(of: slot), replica != address {
                    // The master is gone (refused, closed: not merely slow). Its replica knows it
                    // was promoted before the node the map is read from may (gossip takes up to
                    // the node timeout): ask it. One not promoted yet answers MOVED to the dead
                    // master, and the command fails below.
                    failedMaster = address
                    moved = replica
                    continue
                }
                // A timeout says nothing of the slots (the node is busy): fail now, read nothing.
                guard error == .unavailable, !refreshedAfterFailure else { break }
                refreshedAfterFailure = true
                try? refreshSlots(deadline: deadline)
                if slot.flatMap(cluster.topology.owner(of:)) == address { break }
                continue
            }
            asked = nil
            guard case .error(let message) = reply, let redirect = ClusterRedirect(message) else {
                // The dead master's replica answered: its slots are the replica's now.
                if let failedMaster, address != failedMaster { cluster.topology.promote(failedMaster, to: address) }
                return reply
            }
            switch redirect {
            case .moved(let movedSlot, let target):
                // The node named is the slot's master now: go there next, and learn the map
                // again before the following command.
                cluster.topology.move(movedSlot, to: target)
                moved = target
            case .ask(_, let target):
                asked = target
            case .retry:
                lastError = .unavailable
                pauses += 1
                guard pauses <= 3, pause(milliseconds: 10 << (pauses - 1), deadline: deadline) else { throw lastError }
            }
        }
        throw lastError
    }

    /// Sends each node its share of `slots`' commands in one call, and puts the replies back in
    /// order; a command answered with a redirection is sent again alone through `one`.
    private func grouped(
        slots: [Int?], deadline: Deadline, _ batch: (RedisNode, [Int]) throws(StateStoreError) -> [RedisReply],
        one: (Int) throws(StateStoreError) -> RedisReply
    ) throws(StateStoreError) -> [RedisReply] {
        guard !slots.isEmpty else { return [] }
        var byNode: [GatewayConfig.HostPort: [Int]] = [:]
        var order: [GatewayConfig.HostPort] = []
        for (index, slot) in slots.enumerated() {
            // A command without a key joins the first node's batch.
            var address = slot == nil ? order.first : nil
            if address == nil { address = try owner(of: slot, deadline: deadline) }
            guard let address else { throw .unavailable }
            if byNode[address] == nil { order.append(address) }
            byNode[address, default: []].append(index)
        }
        var replies = [RedisReply?](repeating: nil, count: slots.count)
        for address in order {
            let indices = byNode[address] ?? []
            let answered: [RedisReply]
            do {
                answered = try batch(node(address), indices)
            } catch {
                for index in indices { replies[index] = try one(index) }
                continue
            }
            for (index, reply) in zip(indices, answered) {
                if case .error(let message) = reply, ClusterRedirect(message) != nil {
                    replies[index] = try one(index)
                } else {
                    replies[index] = reply
                }
            }
        }
        return replies.map { $0 ?? .null }
    }

    /// The master serving `slot` (any known node for nil), reading the map when it is unknown
    /// or stale.
    private func owner(of slot: Int?, deadline: Deadline) throws(StateStoreError) -> GatewayConfig.HostPort? {
        let topology = cluster.topology
        if topology.isStale || topology.isEmpty || slot.map({ topology.owner(of: $0) == nil }) == true {
            try refreshSlots(deadline: deadline)
        }
        guard let slot else { return topology.masters.first ?? cluster.seeds.first }
        return topology.owner(of: slot)
    }

    /// Reads `CLUSTER SLOTS` from the first node that answers: known masters, then the seeds.
    /// Every connection of the process to the cluster goes by the map read.
    private func refreshSlots(deadline: Deadline) throws(StateStoreError) {
        var candidates = cluster.topology.masters
        for seed in cluster.seeds where !candidates.contains(seed) { candidates.append(seed) }
        var lastError = StateStoreError.unavailable
        for address in candidates {
            do {
                let reply = try node(address).command([Array("CLUSTER".utf8), Array("SLOTS".utf8)], deadline: deadline, operation: "CLUSTER")
                guard let map = ClusterSlots.parse(reply) else {
                    lastError = .unexpectedReply
                    continue
                }
                cluster.topology.replace(with: map)
                return
            } catch {
                lastError = error
            }
        }
        // Keep what is known: a stale map is better than none while the cluster elects.
        if !cluster.topology.isEmpty { return }
        throw lastError
    }

    private func node(_ address: GatewayConfig.HostPort) -> RedisNode {
        if let known = cluster.nodes[address] { return known }
        let made = RedisNode(settings: settings.node(address), clock: clock)
        cluster.nodes[address] = made
        return made
    }

    /// Waits `milliseconds` unless the deadline would pass first; false when there is no time.
    private func pause(milliseconds: Int, deadline: Deadline) -> Bool {
        guard let left = deadline.timeout(cappedAt: 3600, at: clock()), left * 1000 > Double(milliseconds) + 1 else { return false }
        var request = timespec(tv_sec: 0, tv_nsec: milliseconds * 1_000_000)
        var rest = timespec()
        while nanosleep(&request, &rest) != 0 && errno == EINTR { request = rest }
        return true
    }

    private struct ClusterState {
        let seeds: [GatewayConfig.HostPort]
        /// The process's slot map of this cluster, shared with its other connections.
        let topology: ClusterTopology
        var nodes: [GatewayConfig.HostPort: RedisNode] = [:]

        init(seeds: [GatewayConfig.HostPort]) {
            self.seeds = seeds
            topology = ClusterTopology.shared(seeds: seeds)
        }
    }
}
