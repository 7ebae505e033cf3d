import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real redis-server for one test: its own folder, a free TCP port and a unix socket,
/// optionally a password; no persistence. `stop()` stops exactly this process.
///
/// With `GATEWAY_TEST_REDIS=cluster` (scripts/test runs the Redis-state and queue-mode suites
/// once more so) it is a local Redis Cluster instead (``RedisCluster``, 3 masters + 3
/// replicas): the gateway is pointed at it with `REDIS_CLUSTER_NODES`, each `cli` command goes
/// where its key lives (`KEYS`, `SCRIPT` and `FUNCTION` to every master), `kill()` and `start()` take the
/// whole cluster down and back.
final class RedisServer {
    let directory: URL
    let port: Int
    let password: String?
    private(set) var pid: pid_t = 0
    let cluster: RedisCluster?

    static var onCluster: Bool { ProcessInfo.processInfo.environment["GATEWAY_TEST_REDIS"] == "cluster" }

    var socketPath: String { directory.appending(path: "redis.sock").path }

    /// `appendfsync`: run append-only with this fsync policy (`always`, `everysec`); nil keeps nothing.
    let appendfsync: String?

    init(password: String? = nil, appendfsync: String? = nil) throws {
        self.appendfsync = appendfsync
        directory = FileManager.default.temporaryDirectory.appending(path: "tg-redis-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.password = password
        if Self.onCluster {
            let cluster = try RedisCluster(password: password)
            self.cluster = cluster
            port = cluster.nodes[0].port
            return
        }
        cluster = nil
        port = try LocalStack.freePort()
        try start()
    }

    /// Starts (or restarts) the server on the same port and socket.
    func start() throws {
        if let cluster { return try cluster.restart() }
        var arguments = [
            "--port", "\(port)", "--bind", "127.0.0.1", "--unixsocket", socketPath, "--unixsocketperm", "700",
            "--dir", directory.path, "--save", "", "--appendonly", appendfsync == nil ? "no" : "yes", "--daemonize", "no", "--loglevel", "warning",
            "--logfile", directory.appending(path: "redis.log").path,
            // DEBUG SLEEP stalls the server for the fault tests (off by default since Redis 7).
            "--enable-debug-command", "local",
        ]
        if let password { arguments += ["--requirepass", password] }
        if let appendfsync { arguments += ["--appendfsync", appendfsync] }
        pid = try ChildProcess.spawn("/usr/bin/redis-server", arguments)
        try waitUntil("redis-server answers") { (try? self.cli("PING")) == "PONG" }
    }

    /// Kills the server at once (no shutdown), as a crash would.
    func kill() {
        if let cluster { return cluster.killAll() }
        Glibc.kill(pid, SIGKILL)
        ChildProcess.waitForExit(pid)
        pid = 0
    }

    func stop() throws {
        try cluster?.stop()
        if pid != 0 {
            Glibc.kill(pid, SIGTERM)
            let gone = (try? waitUntil("redis-server exits") { ChildProcess.reapIfExited(self.pid) }) != nil
            if !gone {
                Glibc.kill(pid, SIGKILL)
                ChildProcess.waitForExit(pid)
                throw StackError("redis-server lingered after SIGTERM")
            }
            pid = 0
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Runs one redis-cli command and returns its raw output, trimmed.
    @discardableResult
    func cli(_ arguments: String...) throws -> String {
        try cli(arguments)
    }

    func cli(_ arguments: [String]) throws -> String {
        if let cluster {
            switch arguments.first?.uppercased() {
            case "KEYS":
                return try cluster.masterPorts().map { try cluster.rawCLI($0, arguments) }.filter { !$0.isEmpty }.joined(separator: "\n")
            case "SCRIPT", "FUNCTION", "CONFIG", "FLUSHALL":
                return try cluster.masterPorts().map { try cluster.rawCLI($0, arguments) }.first ?? ""
            default:
                return try cluster.rawCLI(port, arguments)
            }
        }
        var all = ["--raw", "-s", socketPath]
        if let password { all += ["--no-auth-warning", "-a", password] }
        return try ChildProcess.run("/usr/bin/redis-cli", all + arguments).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The commands the server ran while `body` ran, as `MONITOR` prints them (one server
    /// only): a client's are tagged with its address, a script's with `lua`. `until`: texts
    /// the monitor prints once `body`'s commands have run (its lines come a little later).
    func monitoring(until texts: String..., body: () throws -> Void) throws -> [String] {
        guard cluster == nil else { throw StackError("MONITOR watches one server") }
        let path = directory.appending(path: "monitor-\(UUID().uuidString.prefix(8)).txt").path
        var arguments = ["-s", socketPath]
        if let password { arguments += ["--no-auth-warning", "-a", password] }
        let monitor = try ChildProcess.spawn("/usr/bin/redis-cli", arguments + ["MONITOR"], outputPath: path)
        defer {
            Glibc.kill(monitor, SIGTERM)
            ChildProcess.waitForExit(monitor)
        }
        func lines() -> [String] { ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
        try waitUntil("the monitor is on") { lines().first == "OK" }
        try body()
        try waitUntil("the monitor printed \(texts)") { texts.allSatisfy { text in lines().contains { $0.contains(text) } } }
        return Array(lines().dropFirst())
    }

    /// `redis-cli --eval` of a script file with keys and arguments; the reply's lines.
    func eval(scriptFile: String, keys: [String], arguments: [String]) throws -> [String] {
        try cli(["--eval", scriptFile] + keys + [","] + arguments).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    /// The environment that points the gateway at this server.
    func gatewayEnvironment(useSocket: Bool) -> [String: String] {
        if let cluster { return cluster.gatewayEnvironment }
        var environment = useSocket ? ["REDIS_SOCKET": socketPath] : ["REDIS_HOST": "127.0.0.1", "REDIS_PORT": "\(port)"]
        if let password { environment["REDIS_PASSWORD"] = password }
        return environment
    }
}

/// Calls of each command in `INFO commandstats`' text (commands run inside scripts too).
func commandCalls(inCommandstats text: String) -> [String: Int] {
    var result: [String: Int] = [:]
    // INFO's lines end in "\r\n", one Character to Swift: split at any line end.
    for line in text.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_") {
        let name = String(line.dropFirst("cmdstat_".count).prefix { $0 != ":" })
        if let calls = line.split(separator: ",").first?.split(separator: "=").last.flatMap({ Int($0) }) { result[name, default: 0] += calls }
    }
    return result
}

/// A record of little-endian doubles as the scripts pack them (`{tg:ID}:pacing`: `TOKENS AT
/// UNTIL WARNED KEEP` then the send times; queue mode's bucket: `MILLI_TOKENS AT WARNED`), read
/// by Redis's own `struct` library rather than the gateway's scripts; empty when the key is
/// missing.
func pacingRecord(_ key: String, in redis: RedisServer) throws -> [Int64] {
    let decode = """
        local v = redis.call('GET', KEYS[1])
        if not v then return {} end
        local fields = {struct.unpack('<' .. string.rep('d', #v / 8), v)}
        local out = {}
        for i = 1, #v / 8 do out[i] = string.format('%d', fields[i]) end
        return out
        """
    return try redis.cli("EVAL", decode, "1", key).split(whereSeparator: \.isNewline).compactMap { Int64($0) }
}
