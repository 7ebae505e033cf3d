import Foundation
import GatewayHTTP
import GatewayRuntime
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real gateway on loopback for one test: the release responder (under spawn-fcgi or its own
/// supervisor) and nginx with a self-signed certificate, in a temporary folder with a free
/// port. `stop()` stops exactly the processes it started, fails if one lingers, and deletes
/// the folder.
final class LocalStack {
    enum PoolMode { case spawnFCGI, supervisor }

    static let secret = "integration-secret_\(UInt32.random(in: 0...UInt32.max))"
    /// scripts/test sets GATEWAY_TEST_TOKEN and greps every log of the suite for it afterwards.
    static let token =
        ProcessInfo.processInfo.environment["GATEWAY_TEST_TOKEN"]
        ?? "987654:integration-token-not-real-\(UInt32.random(in: 0...UInt32.max))"

    /// The services' bearer token for the send API (SERVICE_API_TOKEN).
    static let serviceToken = "integration-service-token-\(UInt32.random(in: 0...UInt32.max))"

    let directory: URL
    let port: Int
    let socketPath: String
    private(set) var poolPIDs: [pid_t] = []
    /// Processes started directly (nginx, the supervisor): our children, reaped by `stop()`.
    private var children: [pid_t] = []
    private let client: HTTPClient

    var url: String { "https://127.0.0.1:\(port)/webhook/telegram" }
    var gatewayLog: String { (try? String(contentsOf: directory.appending(path: "gateway.log"), encoding: .utf8)) ?? "" }
    var nginxLogs: String {
        ["access.log", "telegram-gateway.access.log", "error.log"].map {
            (try? String(contentsOf: directory.appending(path: "nginx/logs/\($0)"), encoding: .utf8)) ?? ""
        }.joined()
    }

    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static var binary: String {
        ProcessInfo.processInfo.environment["GATEWAY_BINARY"]
            ?? packageRoot.appending(path: ".build/release/telegram-gateway").path
    }

    static var standinsBinary: String {
        ProcessInfo.processInfo.environment["GATEWAY_STANDINS"]
            ?? packageRoot.appending(path: ".build/release/gateway-standins").path
    }

    /// The Bot API stand-in's port when the stack runs the stand-ins.
    private(set) var botAPIPort: Int?
    var recordsDirectory: URL { directory.appending(path: "records") }

    init(
        mode: PoolMode = .spawnFCGI, processes: Int = 2, threads: Int = 4, standins: Bool = false,
        extraEnvironment: [String: String] = [:], binary: String = LocalStack.binary
    ) throws {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw StackError("no release responder at \(binary): run scripts/test, or swift build -c release first")
        }
        directory = FileManager.default.temporaryDirectory.appending(path: "tg-gateway-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        port = try Self.freePort()
        socketPath = directory.appending(path: "fcgi.sock").path
        var environment = [
            "TELEGRAM_BOT_TOKEN": Self.token, "TELEGRAM_WEBHOOK_SECRET": Self.secret,
            "LOG_FILE": directory.appending(path: "gateway.log").path, "GATEWAY_PROCESSES": "\(processes)",
            "GATEWAY_THREADS": "\(threads)",
            // No Redis unless the test brings one: a port where nothing listens (fail-open).
            "REDIS_HOST": "127.0.0.1", "REDIS_PORT": "\(try Self.freePort())",
            "METRICS_DIR": directory.appending(path: "metrics").path, "SERVICE_API_TOKEN": Self.serviceToken,
        ]
        var standinArguments: [String]?
        if standins {
            let servicesPort = try Self.freePorts(count: 4)
            let botAPIPort = try Self.freePort()
            self.botAPIPort = botAPIPort
            for (offset, variable) in ["CONVERSATION_SERVICE_URL", "USER_PROFILE_SERVICE_URL", "MATCHING_SERVICE_URL", "NOTIFICATION_SERVICE_URL"]
                .enumerated()
            {
                environment[variable] = "http://127.0.0.1:\(servicesPort + offset)"
            }
            environment["TELEGRAM_API_BASE_URL"] = "http://127.0.0.1:\(botAPIPort)"
            standinArguments = [
                "--services-port", "\(servicesPort)", "--bot-api-port", "\(botAPIPort)",
                "--record", directory.appending(path: "records").path, "--quiet",
            ]
        }
        environment.merge(extraEnvironment) { _, new in new }
        let envFile = directory.appending(path: ".env")
        try environment.map { "\($0.key)=\($0.value)\n" }.sorted().joined().write(to: envFile, atomically: false, encoding: .utf8)
        client = try HTTPClient(caFile: directory.appending(path: "tls/cert.pem").path)

        do {
            if let standinArguments {
                guard FileManager.default.isExecutableFile(atPath: Self.standinsBinary) else {
                    throw StackError("no stand-ins at \(Self.standinsBinary): run scripts/test")
                }
                _ = try launch(Self.standinsBinary, standinArguments)
                try waitUntil("the stand-ins answer") { (try? self.control(["reset": true])) != nil }
            }
            let secretsMap = directory.appending(path: "nginx-secrets.map").path
            let map = try ChildProcess.run(binary, ["--env-file", envFile.path, "--print-nginx-secret-map"])
            try map.write(toFile: secretsMap, atomically: false, encoding: .utf8)

            switch mode {
            case .spawnFCGI:
                let pidFile = directory.appending(path: "pool.pid").path
                try ChildProcess.run(
                    "/usr/bin/spawn-fcgi",
                    [
                        "-s", socketPath, "-M", "0600", "-F", "\(processes)", "-P", pidFile, "--",
                        binary, "--env-file", envFile.path, "--threads", "\(threads)",
                    ])
                poolPIDs = try String(contentsOfFile: pidFile, encoding: .utf8).split(whereSeparator: \.isNewline)
                    .compactMap { pid_t($0) }
            case .supervisor:
                let supervisor = try launch(binary, ["--socket", socketPath, "--socket-mode", "0600", "--env-file", envFile.path])
                poolPIDs = [supervisor]
                try waitUntil("the supervisor's socket exists") { FileManager.default.fileExists(atPath: self.socketPath) }
            }

            let conf = try ChildProcess.run(
                "/bin/bash",
                [
                    Self.packageRoot.appending(path: "scripts/nginx-local").path, directory.path, "\(port)", socketPath, secretsMap,
                ]
            ).trimmingCharacters(in: .whitespacesAndNewlines)
            let nginxDirectory = directory.appending(path: "nginx").path
            let nginx = try launch(
                "/usr/sbin/nginx",
                [
                    "-p", nginxDirectory, "-c", conf, "-e", nginxDirectory + "/logs/error.log", "-g", "daemon off;",
                ])
            do {
                try waitUntil("nginx answers") { (try? self.post(Array("{}".utf8), secret: nil).status) == 403 }
            } catch {
                // The stack's folder goes with stop(): say why here (a port taken, a bad file).
                let log = (try? String(contentsOfFile: nginxDirectory + "/logs/error.log", encoding: .utf8)) ?? "(no error log)"
                throw StackError(
                    "nginx does not answer on port \(port) (\(kill(nginx, 0) == 0 ? "running" : "exited")); its error log ends: \(log.suffix(800))")
            }
        } catch {
            try? stop()
            throw error
        }
    }

    /// Posts `body` to the webhook; `secret` nil sends no secret header.
    func post(_ body: [UInt8], secret: String? = LocalStack.secret, method: String = "POST") throws -> HTTPResponse {
        var headers: [(name: String, value: String)] = [("Content-Type", "application/json")]
        if let secret { headers.append(("X-Telegram-Bot-Api-Secret-Token", secret)) }
        return try client.send(HTTPRequest(method: method, url: url, headers: headers, body: body, timeoutSeconds: 15))
    }

    func post(_ body: String, secret: String? = LocalStack.secret) throws -> HTTPResponse {
        try post(Array(body.utf8), secret: secret)
    }

    /// A service's call to the send API (`POST /telegram-gateway/send`, or GET of a request's
    /// status with `id`); `token` nil sends no Authorization header.
    func send(_ body: String = "", id: String? = nil, token: String? = LocalStack.serviceToken) throws -> HTTPResponse {
        var headers: [(name: String, value: String)] = [("Content-Type", "application/json")]
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        let path = "/telegram-gateway/send" + (id.map { "/\($0)" } ?? "")
        return try client.send(
            HTTPRequest(
                method: id == nil ? "POST" : "GET", url: "https://127.0.0.1:\(port)\(path)", headers: headers, body: Array(body.utf8),
                timeoutSeconds: 30))
    }

    /// GETs one of the gateway's own pages through nginx (`/telegram-gateway/metrics`, `/health`,
    /// `/status`) with a client of its own, so that any thread may call it.
    func get(_ path: String) throws -> (status: Int, body: String) {
        let client = try HTTPClient(caFile: directory.appending(path: "tls/cert.pem").path)
        let response = try client.send(HTTPRequest(url: "https://127.0.0.1:\(port)\(path)", timeoutSeconds: 5))
        return (response.status, String(decoding: response.body, as: UTF8.self))
    }

    /// The pool's metrics, as Prometheus scrapes them.
    func metrics() throws -> String {
        try get("/telegram-gateway/metrics").body
    }

    /// The value of an unlabelled series in the pool's metrics.
    func metric(_ name: String) throws -> Double? {
        try metrics().split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
    }

    /// Starts `scripts/loadtest` against this stack (bounded: `seconds`, 16 connections). Wait
    /// for it with `finishLoadtest`, which returns its summary line.
    func startLoadtest(seconds: Int) throws -> pid_t {
        try ChildProcess.spawn(
            "/bin/bash", [Self.packageRoot.appending(path: "scripts/loadtest").path, "-d", "\(seconds)", "-c", "16", url],
            outputPath: directory.appending(path: "loadtest.out").path, environment: ["LOADTEST_SECRET": Self.secret])
    }

    func finishLoadtest(_ pid: pid_t) throws -> String {
        ChildProcess.waitForExit(pid)
        return try String(contentsOf: directory.appending(path: "loadtest.out"), encoding: .utf8)
    }

    /// Tells the stand-ins how to misbehave (see `gateway-standins`).
    func control(_ settings: [String: Any]) throws {
        guard let botAPIPort else { throw StackError("no stand-ins in this stack") }
        let body = try JSONSerialization.data(withJSONObject: settings)
        let response = try client.send(
            HTTPRequest(
                method: "POST", url: "http://127.0.0.1:\(botAPIPort)/_control", body: Array(body), timeoutSeconds: 5))
        guard response.status == 200 else { throw StackError("stand-in control failed") }
    }

    /// What the Bot API stand-in received, in order: method and parameters.
    func botAPICalls() -> [(method: String, params: [String: Any])] {
        records("bot-api.jsonl").map { ($0["method"] as? String ?? "", $0["params"] as? [String: Any] ?? [:]) }
    }

    /// What the service stand-ins received, in order.
    func serviceRequests() -> [(service: String, request: [String: Any])] {
        records("services.jsonl").map { ($0["service"] as? String ?? "", $0["request"] as? [String: Any] ?? [:]) }
    }

    /// How many calls the Bot API stand-in recorded, without parsing them (cheap enough to poll under load).
    func botAPICallCount() -> Int {
        guard let data = FileManager.default.contents(atPath: recordsDirectory.appending(path: "bot-api.jsonl").path) else { return 0 }
        return data.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
    }

    /// When the Bot API stand-in received each call, in order.
    func botAPICallTimes() -> [Double] {
        records("bot-api.jsonl").compactMap { $0["at"] as? Double }
    }

    /// When the service stand-ins received each request, in order.
    func serviceRequestTimes() -> [Double] {
        records("services.jsonl").compactMap { $0["at"] as? Double }
    }

    private func records(_ name: String) -> [[String: Any]] {
        let text = (try? String(contentsOf: recordsDirectory.appending(path: name), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// A free range of `count` consecutive loopback ports.
    static func freePorts(count: Int) throws -> Int {
        for _ in 0..<50 {
            let base = Int.random(in: 20_000...60_000)
            guard (0..<count).allSatisfy({ (try? bindLoopback(port: base + $0)) != nil }) else { continue }
            let claimed = picked.withLock { ports in
                guard (base..<base + count).allSatisfy({ !ports.contains($0) }) else { return false }
                ports.formUnion(base..<base + count)
                return true
            }
            if claimed { return base }
        }
        throw StackError("no free range of \(count) ports")
    }

    /// Children of `pid`, from /proc.
    static func children(of pid: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(pid_t.init).filter { candidate in
            guard let stat = try? String(contentsOfFile: "/proc/\(candidate)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && pid_t(fields[1]) == pid
        }
    }

    /// Stops nginx and the pool (SIGTERM), checks every process is gone, keeps the logs for the
    /// suite-wide check (GATEWAY_TEST_LOGS), removes the folder.
    func stop() throws {
        let started = children
        let descendants = (started + poolPIDs).flatMap(Self.children(of:))
        for pid in Set(started + poolPIDs) { kill(pid, SIGTERM) }
        var lingering: [pid_t] = []
        var lingeringDetails: [String] = []
        for pid in Set(started + poolPIDs + descendants) {
            let isOurs = started.contains(pid)
            let gone =
                (try? waitUntil("pid \(pid) exits", timeout: 15) {
                    isOurs ? ChildProcess.reapIfExited(pid) : ChildProcess.isGone(pid)
                }) != nil
            if !gone {
                lingering.append(pid)
                lingeringDetails.append(Self.describe(pid, log: gatewayLog))
                kill(pid, SIGKILL)
                if isOurs { ChildProcess.waitForExit(pid) }
            }
        }
        children.removeAll()
        poolPIDs.removeAll()
        keepLogs()
        try? FileManager.default.removeItem(at: directory)
        if !lingering.isEmpty { throw StackError("processes lingered after SIGTERM: \(lingering)\n" + lingeringDetails.joined(separator: "\n")) }
    }

    /// What a process that ignores SIGTERM is doing: its command, each thread's state and kernel
    /// wait channel, and its last log lines.
    private static func describe(_ pid: pid_t, log: String) -> String {
        let command = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8))?.replacingOccurrences(of: "\0", with: " ") ?? "?"
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        let threads = tasks.sorted().map { task in
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8)) ?? ""
            let state = stat.lastIndex(of: ")").map { stat[stat.index(after: $0)...].split(separator: " ").first.map(String.init) ?? "?" } ?? "?"
            let wchan = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/wchan", encoding: .utf8)) ?? "?"
            return "\(state):\(wchan)"
        }
        let counted = Dictionary(grouping: threads) { $0 }.map { "\($0.value.count)x \($0.key)" }.sorted()
        let lines = log.split(separator: "\n").filter { $0.contains("\"pid\":\(pid),") || $0.contains("\"pid\":\(pid)}") }.suffix(8)
        return "pid \(pid) (\(command)): threads \(counted)\n  " + lines.joined(separator: "\n  ")
    }

    private func keepLogs() {
        guard let path = ProcessInfo.processInfo.environment["GATEWAY_TEST_LOGS"],
            case let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600), fd >= 0
        else { return }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        handle.write(Data((gatewayLog + nginxLogs).utf8))
        try? handle.close()
    }

    private func launch(_ executable: String, _ arguments: [String]) throws -> pid_t {
        let pid = try ChildProcess.spawn(executable, arguments)
        children.append(pid)
        return pid
    }

    /// Every port this test process picked. A pick is free only until its process binds it, and
    /// a stack binds nginx's last, after the stand-ins' picks: no pick returns one handed out
    /// before, so the picks of one run never meet.
    private static let picked = Mutex<Set<Int>>([])

    static func freePort() throws -> Int {
        for _ in 0..<100 {
            let port = try bindLoopback(port: 0)
            if picked.withLock({ $0.insert(port).inserted }) { return port }
        }
        throw StackError("no free port that this run has not handed out")
    }

    /// A loopback port that accepts connections (the kernel's backlog) and never answers.
    static func silentPeer() throws -> (fd: Int32, port: Int) {
        let peer = try loopbackSocket(port: 0)
        guard listen(peer.fd, 16) == 0 else {
            close(peer.fd)
            throw StackError("cannot listen")
        }
        return peer
    }

    /// Binds a socket to 127.0.0.1:`port` (0: any free port), closes it, and returns the port it got.
    static func bindLoopback(port: Int) throws -> Int {
        let socket = try loopbackSocket(port: port)
        close(socket.fd)
        return socket.port
    }

    /// A TCP socket bound to 127.0.0.1:`port` (0: any free port), and the port it got.
    private static func loopbackSocket(port: Int) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                guard bind(fd, pointer, length) == 0 else { return -1 }
                return getsockname(fd, pointer, &length)
            }
        }
        guard bound == 0 else {
            close(fd)
            throw StackError("port \(port) is not free")
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }
}

struct StackError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Now in seconds on the monotonic clock. Every interval the tests measure is taken on it, and the
/// stand-ins stamp what they receive with it (`at`): the wall clock can step (NTP, a resumed
/// virtual machine), as CI's once did by 6 s in the middle of a test.
func monotonicNow() -> Double {
    Double(monotonicNanoseconds()) / 1e9
}

/// The times in the busiest window of `seconds` (each window starting at one of them), in order.
func busiestWindow(_ times: [Double], seconds: TimeInterval) -> ArraySlice<Double> {
    let sorted = times.sorted()
    var busiest = sorted.prefix(0)
    var start = 0
    for end in sorted.indices {
        while (sorted[end] - sorted[start]) >= seconds { start += 1 }
        if end - start + 1 > busiest.count { busiest = sorted[start...end] }
    }
    return busiest
}

/// Polls `condition` every 20 ms until it holds or `timeout` seconds pass.
func waitUntil(_ what: String, timeout: Double = 10, _ condition: () -> Bool) throws {
    let deadline = monotonicNow() + timeout
    while !condition() {
        guard monotonicNow() < deadline else { throw StackError("timed out waiting until \(what)") }
        usleep(20_000)
    }
}

/// Runs `body` against a fresh stack (with its own redis-server when `redis` is given) and
/// always stops everything it started.
func withStack<T>(
    mode: LocalStack.PoolMode = .spawnFCGI, processes: Int = 2, threads: Int = 4,
    redis: (password: String?, useSocket: Bool)? = nil, standins: Bool = false, environment: [String: String] = [:],
    _ body: (LocalStack, RedisServer?) throws -> T
) throws -> T {
    let server = try redis.map { try RedisServer(password: $0.password) }
    var extra = environment
    if let server, let redis { extra.merge(server.gatewayEnvironment(useSocket: redis.useSocket)) { _, new in new } }
    let stack: LocalStack
    do {
        stack = try LocalStack(mode: mode, processes: processes, threads: threads, standins: standins, extraEnvironment: extra)
    } catch {
        try? server?.stop()
        throw error
    }
    do {
        let result = try body(stack, server)
        try stack.stop()
        try server?.stop()
        return result
    } catch {
        try? stack.stop()
        try? server?.stop()
        throw error
    }
}

func withStack<T>(
    mode: LocalStack.PoolMode = .spawnFCGI, processes: Int = 2, threads: Int = 4, _ body: (LocalStack) throws -> T
) throws -> T {
    try withStack(mode: mode, processes: processes, threads: threads) { stack, _ in try body(stack) }
}
