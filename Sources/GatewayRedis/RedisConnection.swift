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

    /// Runs `script` with EVALSHA (loaded on each node on first use) on the node of its keys.
    func evaluate(_ script: RedisScript, keys: [String], arguments: [[UInt8]], deadline: Deadline = .distantFuture) throws(StateStoreError)
        -> RedisReply
    {
        if let single { return try single.evaluate(script, keys: keys, arguments: arguments, deadline: deadline) }
        let slot = keys.first.map { ClusterSlots.slot(of: Array($0.utf8)) }
        return try routed(slot: slot, deadline: deadline) { node, asking throws(StateStoreError) in
            try node.evaluate(script, keys: keys, arguments: arguments, deadline: deadline, asking: asking)
        }
    }

    /// Runs `script` once per set of keys and arguments: one round trip per node involved.
    /// Replies come back in the calls' order; error replies in place.
    func evaluateAll(_ script: RedisScript, calls: [(keys: [String], arguments: [[UInt8]])], deadline: Deadline = .distantFuture)
        throws(StateStoreError) -> [RedisReply]
    {
        if let single { return try single.evaluateAll(script, calls: calls, deadline: deadline) }
        let slots = calls.map { $0.keys.first.map { ClusterSlots.slot(of: Array($0.utf8)) } }
        return try grouped(slots: slots, deadline: deadline) { node, indices throws(StateStoreError) in
            try node.evaluateAll(script, calls: indices.map { calls[$0] }, deadline: deadline)
        } one: { index throws(StateStoreError) in
            try evaluate(script, keys: calls[index].keys, arguments: calls[index].arguments, deadline: deadline)
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

/// A cluster's answer that the command belongs elsewhere, or must wait.
enum ClusterRedirect: Equatable {
    case moved(slot: Int, to: GatewayConfig.HostPort)
    case ask(slot: Int, to: GatewayConfig.HostPort)
    /// `TRYAGAIN` (a multi-key command during a migration), `CLUSTERDOWN` (no master for a
    /// slot, as during a failover).
    case retry

    init?(_ message: String) {
        let words = message.split(separator: " ")
        switch words.first {
        case "MOVED", "ASK":
            guard words.count >= 3, let slot = Int(words[1]), let target = GatewayConfig.HostPort(words[2]) else { return nil }
            self = words[0] == "MOVED" ? .moved(slot: slot, to: target) : .ask(slot: slot, to: target)
        case "TRYAGAIN", "CLUSTERDOWN":
            self = .retry
        default:
            return nil
        }
    }
}

/// Redis Cluster's key slots: CRC16 (XMODEM) of the key's hash tag, modulo 16384.
enum ClusterSlots {
    static let count = 16384

    static func slot(of key: [UInt8]) -> Int {
        Int(crc16(hashTag(key)) % UInt16(count))
    }

    /// The part of the key the slot comes from: the text inside the first `{…}` when it is not
    /// empty, else the whole key.
    static func hashTag(_ key: [UInt8]) -> ArraySlice<UInt8> {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")),
            let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        else { return key[...] }
        return key[(open + 1)..<close]
    }

    static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return crc
    }

    /// The slot of a command's first key, or nil for a command without keys.
    static func slot(ofCommand arguments: [[UInt8]]) -> Int? {
        key(of: arguments).map(slot(of:))
    }

    static func key(of arguments: [[UInt8]]) -> [UInt8]? {
        guard let name = arguments.first.map({ String(decoding: $0, as: UTF8.self).uppercased() }) else { return nil }
        switch name {
        case "PING", "TIME", "SCRIPT", "INFO", "CLUSTER", "ASKING", "AUTH", "SELECT", "WAIT", "COMMAND", "CONFIG", "DBSIZE":
            return nil
        case "EVAL", "EVALSHA":
            guard arguments.count > 3, let count = Int(String(decoding: arguments[2], as: UTF8.self)), count > 0 else { return nil }
            return arguments[3]
        case "XGROUP", "XINFO", "OBJECT", "MEMORY":
            // A subcommand, then the key.
            return arguments.count > 2 ? arguments[2] : nil
        case "XREAD", "XREADGROUP":
            guard let streams = arguments.firstIndex(where: { String(decoding: $0, as: UTF8.self).uppercased() == "STREAMS" }),
                streams + 1 < arguments.count
            else { return nil }
            return arguments[streams + 1]
        default:
            return arguments.count > 1 ? arguments[1] : nil
        }
    }

    /// `CLUSTER SLOTS`' answer as slot → master address.
    static func parse(_ reply: RedisReply) -> SlotMap? {
        guard case .array(let ranges) = reply, !ranges.isEmpty else { return nil }
        var map = SlotMap()
        for range in ranges {
            guard case .array(let fields) = range, fields.count >= 3, case .integer(let first) = fields[0],
                case .integer(let last) = fields[1], let address = node(fields[2]), first <= last, last < count
            else { return nil }
            let replica = fields.count > 3 ? node(fields[3]) : nil
            map.set(Int(first)...Int(last), to: address, replica: replica)
        }
        return map
    }

    /// A node of `CLUSTER SLOTS`' answer: `[host, port, id, …]`.
    private static func node(_ reply: RedisReply) -> GatewayConfig.HostPort? {
        guard case .array(let fields) = reply, fields.count >= 2, let host = fields[0].text, case .integer(let port) = fields[1] else { return nil }
        return GatewayConfig.HostPort(host: host, port: Int(port))
    }
}

/// Which master serves each slot, and a replica of it: a node's index per slot (2 × 32 KB),
/// and the nodes.
struct SlotMap: Equatable {
    private static let unknown = UInt16.max
    private var owners = [UInt16](repeating: SlotMap.unknown, count: ClusterSlots.count)
    private var replicas = [UInt16](repeating: SlotMap.unknown, count: ClusterSlots.count)
    private(set) var nodes: [GatewayConfig.HostPort] = []

    subscript(slot: Int) -> GatewayConfig.HostPort? {
        guard (0..<ClusterSlots.count).contains(slot), owners[slot] != Self.unknown else { return nil }
        return nodes[Int(owners[slot])]
    }

    func replica(of slot: Int) -> GatewayConfig.HostPort? {
        guard (0..<ClusterSlots.count).contains(slot), replicas[slot] != Self.unknown else { return nil }
        return nodes[Int(replicas[slot])]
    }

    /// How many slots have a master.
    var known: Int { owners.count { $0 != Self.unknown } }

    /// The masters: nodes serving a slot.
    var masters: [GatewayConfig.HostPort] { Set(owners.filter { $0 != Self.unknown }).map { nodes[Int($0)] } }

    /// `slots` are served by `address` (and replicated by `replica`); true when that is news.
    @discardableResult
    mutating func set(_ slots: ClosedRange<Int>, to address: GatewayConfig.HostPort, replica: GatewayConfig.HostPort? = nil) -> Bool {
        let slots = slots.clamped(to: 0...(ClusterSlots.count - 1))
        let owner = index(of: address)
        let copy = replica.map { index(of: $0) }
        var changed = false
        for slot in slots {
            changed = changed || owners[slot] != owner
            owners[slot] = owner
            if let copy { replicas[slot] = copy }
        }
        return changed
    }

    /// Every slot of `master` that `replica` replicates is the replica's now.
    mutating func promote(_ master: GatewayConfig.HostPort, to replica: GatewayConfig.HostPort) {
        guard let from = nodes.firstIndex(of: master), let to = nodes.firstIndex(of: replica) else { return }
        for slot in owners.indices where owners[slot] == UInt16(from) && replicas[slot] == UInt16(to) {
            owners[slot] = UInt16(to)
            replicas[slot] = Self.unknown
        }
    }

    private mutating func index(of address: GatewayConfig.HostPort) -> UInt16 {
        if let known = nodes.firstIndex(of: address) { return UInt16(known) }
        nodes.append(address)
        return UInt16(nodes.count - 1)
    }
}

/// The slot map of one cluster, shared by every connection of the process to it (by its
/// seeds): one `CLUSTER SLOTS` after a `MOVED` serves every thread, and the map is kept once,
/// not once per thread's connection (800 stream workers with a map each spent seconds of CPU
/// building them at start, and their lease renewals ran late).
final class ClusterTopology: Sendable {
    private static let registry = Locked<[[GatewayConfig.HostPort]: ClusterTopology]>([:])
    private let state = Locked<(map: SlotMap, isStale: Bool)>((SlotMap(), false))

    static func shared(seeds: [GatewayConfig.HostPort]) -> ClusterTopology {
        registry.withLock { registry in
            if let known = registry[seeds] { return known }
            let made = ClusterTopology()
            registry[seeds] = made
            return made
        }
    }

    func owner(of slot: Int) -> GatewayConfig.HostPort? { state.withLock { $0.map[slot] } }

    var isEmpty: Bool { state.withLock { $0.map.known == 0 } }
    var isStale: Bool { state.withLock { $0.isStale } }

    /// The masters known, in a stable order.
    var masters: [GatewayConfig.HostPort] { state.withLock { $0.map.masters.sorted { $0.description < $1.description } } }

    func replica(of slot: Int) -> GatewayConfig.HostPort? { state.withLock { $0.map.replica(of: slot) } }

    /// `master` is gone and `replica` answered for it: the replica serves its slots now.
    func promote(_ master: GatewayConfig.HostPort, to replica: GatewayConfig.HostPort) { state.withLock { $0.map.promote(master, to: replica) } }

    /// A `MOVED`: the slot is the target's now, and, when that is news, the rest of the map is
    /// read again next (a replica not yet promoted names the master the map already has).
    func move(_ slot: Int, to target: GatewayConfig.HostPort) {
        state.withLock { state in
            if state.map.set(slot...slot, to: target) { state.isStale = true }
        }
    }

    func replace(with map: SlotMap) { state.withLock { $0 = (map, false) } }
}
