import GatewayCore

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
        slot(of: key[...])
    }

    static func slot(of key: ArraySlice<UInt8>) -> Int {
        Int(crc16(hashTag(key)) % UInt16(count))
    }

    /// The part of the key the slot comes from: the text inside the first `{…}` when it is not
    /// empty, else the whole key.
    static func hashTag(_ key: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")),
            let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        else { return key }
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
        case "PING", "TIME", "SCRIPT", "FUNCTION", "INFO", "CLUSTER", "ASKING", "AUTH", "SELECT", "WAIT", "COMMAND", "CONFIG", "DBSIZE":
            return nil
        case "EVAL", "EVALSHA", "FCALL", "FCALL_RO":
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
