import GatewayCore
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What both executables do before anything else: configuration from the environment and
/// `.env`, the routes file, logging, clocks.

/// Reads `.env` (if present), overlays the process environment and validates the result.
public func loadConfiguration(envFile: String) throws -> GatewayConfig {
    var dotEnv: [String: String] = [:]
    if let contents = readFile(envFile) { dotEnv = try DotEnv.parse(contents) }
    var environment: [String: String] = [:]
    var cursor = environ
    while let entry = cursor.pointee {
        let pair = String(cString: entry).split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        if pair.count == 2 { environment[String(pair[0])] = String(pair[1]) }
        cursor += 1
    }
    return try GatewayConfig.load(environment: GatewayConfig.merge(environment: environment, dotEnv: dotEnv))
}

/// The route table and services: the defaults, changed by ROUTES_FILE when it is set; every
/// service's timeout checked against the update's deadline.
public func loadRoutes(_ config: GatewayConfig) throws -> (RouteTable, [ServiceName: GatewayConfig.ServiceSettings]) {
    guard let path = config.routesFile else { return (.standard, config.services) }
    guard let contents = readFile(path) else {
        throw ConfigError(problems: [.init(variable: "ROUTES_FILE", message: "cannot read \(path)")])
    }
    let (routes, services) = try RouteFile.apply(contents, to: .standard, services: config.services)
    try config.check(services: services)
    return (routes, services)
}

/// LOG_FILE as opened at start, for `reopenLogFile()`.
private let logFile = Mutex<(path: String, fd: Int32)?>(nil)

/// Sends every log line to standard error, or appends it to LOG_FILE. A failed write (a full
/// disk) drops the line: logging never stops the gateway from answering.
public func bootstrapLogging(_ config: GatewayConfig) -> Logger {
    var fd: Int32 = STDERR_FILENO
    if let path = config.logFile {
        let opened = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        if opened >= 0 {
            fd = opened
            logFile.withLock { $0 = (path, opened) }
        } else {
            printError("telegram-gateway: cannot open LOG_FILE (errno \(errno)); logging to stderr")
        }
    }
    let sink: LogLineHandler.Sink = { [fd] line in
        line.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var offset = 0
            while offset < raw.count {
                let written = write(fd, base + offset, raw.count - offset)
                if written <= 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }
    let level = config.logLevel
    let format = config.logFormat
    LoggingSystem.bootstrap { _ in LogLineHandler(level: level, format: format, clock: wallClock, sink: sink) }
    var logger = Logger(label: "telegram-gateway")
    // An Int64: the log line writes one without trying other types first.
    logger[metadataKey: LogKey.pid] = .stringConvertible(Int64(getpid()))
    return logger
}

/// Opens LOG_FILE's path again and puts the new file under the descriptor every thread writes
/// to (`dup2` swaps it in one step: no line is written nowhere). After logrotate renamed the
/// file, lines written before this land in the renamed one and every later line in the new one.
/// False when there is no LOG_FILE or it cannot be opened (logging goes on to the old file).
@discardableResult
public func reopenLogFile() -> Bool {
    logFile.withLock { current in
        guard let (path, fd) = current else { return false }
        let opened = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard opened >= 0 else { return false }
        defer { close(opened) }
        guard dup2(opened, fd) == fd else { return false }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return true
    }
}

@Sendable public func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// A random (version 4) UUID for a first-time user's internal id, in lowercase hex: 16 bytes of
/// the system's generator (two reads), written straight into the string.
@Sendable public func makeInternalUserID() -> String {
    var generator = SystemRandomNumberGenerator()
    var random = (generator.next() as UInt64, generator.next() as UInt64)
    return withUnsafeMutableBytes(of: &random) { bytes in
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return String(unsafeUninitializedCapacity: 36) { text in
            let digits: StaticString = "0123456789abcdef"
            var count = 0
            for (index, byte) in bytes.enumerated() {
                if index == 4 || index == 6 || index == 8 || index == 10 {
                    text[count] = UInt8(ascii: "-")
                    count += 1
                }
                text[count] = digits.utf8Start[Int(byte >> 4)]
                text[count + 1] = digits.utf8Start[Int(byte & 0x0F)]
                count += 2
            }
            return count
        }
    }
}

@Sendable public func wallClock() -> (seconds: Int64, nanoseconds: Int32) {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return (Int64(now.tv_sec), Int32(now.tv_nsec))
}

public func printError(_ message: String) {
    let line = Array((message + "\n").utf8)
    _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

public func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return path }
    let directory = buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
    return String(decoding: directory, as: UTF8.self) + "/" + path
}

/// A whole file as text, or nil when it cannot be opened.
public func readFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = read(fd, &chunk, chunk.count)
        if count <= 0 { break }
        bytes.append(contentsOf: chunk[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Replaces the file at `path` with `text`: written to `path.tmp`, then renamed over it, so a
/// reader never sees half a file. False (and no temporary left) when it could not be written.
@discardableResult
public func writeFileAtomically(_ text: String, to path: String, mode: mode_t) -> Bool {
    let temporary = path + ".tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { return false }
    let bytes = Array(text.utf8)
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
    guard written == bytes.count, rename(temporary, path) == 0 else {
        unlink(temporary)
        return false
    }
    return true
}

/// The system's monotonic clock for the core, sleeping with `nanosleep` (resumed after signals).
public let systemClock = GatewayClock(now: monotonicNanoseconds) { nanoseconds in
    var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
    var left = timespec()
    while nanosleep(&request, &left) != 0 && errno == EINTR { request = left }
}
