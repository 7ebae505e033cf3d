import GatewayCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The pool's own process manager, for running without spawn-fcgi: keeps `processes` children
/// serving the listening socket (handed to each on fd 0, as spawn-fcgi does) and restarts any
/// child that dies.
///
/// Signals: SIGTERM/SIGINT/SIGQUIT stop the children gracefully (SIGKILL after the timeout) and
/// return; SIGHUP first runs the executable with `--check-config` (the binary now installed, the
/// configuration now in place) and, only when that passes, starts a fresh set of children and
/// retires the old ones gracefully: a reload with a broken configuration leaves the pool
/// serving as it was. SIGUSR1 reopens the log file, the supervisor's and every child's
/// (after logrotate renamed it).
public final class Supervisor {
    public struct Settings: Sendable {
        public var listenFD: Int32
        public var processes: Int
        /// Arguments for each child (the executable's own path is prepended).
        public var childArguments: [String]
        public var shutdownTimeoutSeconds: Double
        /// Removed when the supervisor exits.
        public var socketPath: String?
        /// Arguments of the check a reload runs first (the executable's own path is prepended);
        /// it must exit 0 within `preflightTimeoutSeconds`.
        public var preflightArguments: [String]
        public var preflightTimeoutSeconds: Double = 15

        public init(
            listenFD: Int32, processes: Int, childArguments: [String], shutdownTimeoutSeconds: Double, socketPath: String?,
            preflightArguments: [String]
        ) {
            self.listenFD = listenFD
            self.processes = processes
            self.childArguments = childArguments
            self.shutdownTimeoutSeconds = shutdownTimeoutSeconds
            self.socketPath = socketPath
            self.preflightArguments = preflightArguments
        }
    }

    /// The environment variable a child finds its supervisor's pid in: it stops when the
    /// supervisor is gone instead of serving on as an orphan.
    public static let parentVariable = "TELEGRAM_GATEWAY_SUPERVISOR_PID"

    private struct Child {
        let startedAt: UInt64
        var isRetiring = false
    }

    private let settings: Settings
    private let logger: Logger
    private let clock: @Sendable () -> UInt64
    private var children: [pid_t: Child] = [:]
    /// Due times of children to start; a child that keeps dying young is restarted ever later.
    private var pendingStarts: [UInt64] = []
    private var quickFailures = 0
    private var restarts = 0
    /// Whether the last reload's check failed (the old children kept serving).
    private var lastReloadFailed = false
    /// Told the number of children, of restarts and whether the last reload was refused,
    /// whenever they change (metrics, the status page).
    private let onChange: ((_ processes: Int, _ restarts: Int, _ lastReloadFailed: Bool) -> Void)?
    /// Reopens the supervisor's own log file (SIGUSR1).
    private let onReopenLogs: (() -> Void)?

    public init(
        settings: Settings, logger: Logger, clock: @escaping @Sendable () -> UInt64,
        onChange: ((_ processes: Int, _ restarts: Int, _ lastReloadFailed: Bool) -> Void)? = nil, onReopenLogs: (() -> Void)? = nil
    ) {
        self.onChange = onChange
        self.onReopenLogs = onReopenLogs
        self.settings = settings
        self.logger = logger
        self.clock = clock
    }

    public func run() throws(FastCGIError) {
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        for _ in 0..<settings.processes { try spawn() }
        onChange?(children.count, restarts, lastReloadFailed)
        logger.info("supervisor started", metadata: ["processes": "\(settings.processes)", LogKey.pid: .stringConvertible(getpid())])

        var timeout = timespec(tv_sec: 0, tv_nsec: 200_000_000)
        while true {
            let signal = sigtimedwait(&signals, nil, &timeout)
            switch signal {
            case SIGTERM, SIGINT, SIGQUIT:
                logger.info("supervisor stopping", metadata: ["signal": "\(signal)"])
                stopAll()
                if let path = settings.socketPath { unlink(path) }
                return
            case SIGHUP:
                reload()
            case SIGUSR1:
                onReopenLogs?()
                for pid in children.keys { kill(pid, SIGUSR1) }
                logger.info("log file reopened", metadata: ["children": "\(children.count)"])
            default:
                break
            }
            let before = (children.count, restarts)
            reap()
            try startDueChildren()
            if before != (children.count, restarts) { onChange?(children.count, restarts, lastReloadFailed) }
        }
    }

    private func spawn() throws(FastCGIError) {
        let pid = try launch(settings.childArguments, stdin: settings.listenFD, output: nil)
        children[pid] = Child(startedAt: clock())
    }

    /// Starts the executable with `arguments`: `stdin` on fd 0, `output` (when given) on fds 1
    /// and 2, the default dispositions for the signals the supervisor takes, and SIGUSR1
    /// blocked so that a log reopen sent while the child starts cannot kill it (the child's
    /// pool takes it from there).
    private func launch(_ arguments: [String], stdin: Int32, output: Int32?) throws(FastCGIError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        if let output {
            posix_spawn_file_actions_adddup2(&actions, output, 1)
            posix_spawn_file_actions_adddup2(&actions, output, 2)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGUSR1)
        posix_spawnattr_setsigmask(&attributes, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGPIPE, SIGUSR1] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var environment = Self.environment().filter { !$0.hasPrefix(Self.parentVariable + "=") }
        environment.append("\(Self.parentVariable)=\(getpid())")
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for argument in argv + envp { free(argument) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { throw .spawn(errno: result) }
        return pid
    }

    /// Runs the reload's check (the executable as installed now, with `--check-config`) and
    /// returns nil when it passed, else what it printed (its first lines) or why it failed.
    private func preflight() -> String? {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return "cannot create a pipe (errno \(errno))" }
        defer { close(ends[0]) }
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { if devNull >= 0 { close(devNull) } }
        let pid: pid_t
        do {
            pid = try launch(settings.preflightArguments, stdin: devNull >= 0 ? devNull : ends[0], output: ends[1])
        } catch {
            close(ends[1])
            return "cannot run \(executable): \(error)"
        }
        close(ends[1])
        // Read what it prints until it closes its end (exits), within the timeout.
        var printed: [UInt8] = []
        let deadline = clock() + UInt64(settings.preflightTimeoutSeconds * 1e9)
        var buffer = [UInt8](repeating: 0, count: 4096)
        var timedOut = false
        while true {
            let now = clock()
            guard now < deadline else {
                timedOut = true
                break
            }
            var poller = pollfd(fd: ends[0], events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(min(1000, (deadline - now) / 1_000_000 + 1)))
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { continue }
            let count = read(ends[0], &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            if printed.count < 8192 { printed += buffer[0..<count] }
        }
        if timedOut { kill(pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if timedOut { return "the check did not finish within \(settings.preflightTimeoutSeconds) s" }
        guard ExitStatus(status).isClean else {
            let lines = String(decoding: printed, as: UTF8.self).split(separator: "\n").prefix(8).map { String($0.prefix(300)) }
            return "\(ExitStatus(status)): " + lines.joined(separator: " | ")
        }
        return nil
    }

    private func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0, let child = children.removeValue(forKey: pid) else { return }
            let exit = ExitStatus(status)
            if child.isRetiring {
                logger.info("child retired", metadata: [LogKey.pid: .stringConvertible(pid), "exit": "\(exit)"])
                continue
            }
            if exit.isClean {
                // A child that served its max requests and drained: replace it at once.
                logger.info("child recycled; replacing it", metadata: [LogKey.pid: .stringConvertible(pid)])
                pendingStarts.append(clock())
                continue
            }
            logger.warning("child died; restarting", metadata: [LogKey.pid: .stringConvertible(pid), "exit": "\(exit)"])
            restarts += 1
            let lived = clock() - child.startedAt
            quickFailures = lived < 1_000_000_000 ? quickFailures + 1 : 0
            let delay = quickFailures == 0 ? 0 : min(UInt64(100_000_000) << min(quickFailures, 7), 10_000_000_000)
            pendingStarts.append(clock() + delay)
        }
    }

    private func startDueChildren() throws(FastCGIError) {
        let now = clock()
        let due = pendingStarts.filter { $0 <= now }
        pendingStarts.removeAll { $0 <= now }
        for _ in due { try spawn() }
    }

    /// Checks the installed binary and configuration, then starts a full new set of children
    /// and asks the old ones to finish and exit. A failed check changes nothing.
    private func reload() {
        if let problem = preflight() {
            lastReloadFailed = true
            onChange?(children.count, restarts, lastReloadFailed)
            logger.error(
                "reload refused: the new configuration or binary does not pass --check-config; the running children keep serving",
                metadata: [LogKey.error: "\(problem)", "processes": "\(children.count)"])
            return
        }
        lastReloadFailed = false
        let old = Array(children.keys)
        for pid in old { children[pid]?.isRetiring = true }
        logger.info("supervisor reloading", metadata: ["processes": "\(settings.processes)"])
        do {
            for _ in 0..<settings.processes { try spawn() }
        } catch {
            logger.error("reload could not start new children; keeping the old ones", metadata: [LogKey.error: "\(error)"])
            for pid in old { children[pid]?.isRetiring = false }
            return
        }
        for pid in old { kill(pid, SIGTERM) }
    }

    private func stopAll() {
        pendingStarts.removeAll()
        for pid in children.keys {
            children[pid]?.isRetiring = true
            kill(pid, SIGTERM)
        }
        let deadline = clock() + UInt64((settings.shutdownTimeoutSeconds + 2) * 1e9)
        while !children.isEmpty, clock() < deadline {
            reap()
            usleep(20_000)
        }
        for pid in children.keys {
            logger.warning("child did not stop in time; killing it", metadata: [LogKey.pid: .stringConvertible(pid)])
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        children.removeAll()
        logger.info("supervisor stopped")
    }

    /// The executable children run: the path the supervisor was started by, so that after an
    /// upgrade installed a new binary there, SIGHUP starts children of the new version. Falls
    /// back to /proc/self/exe when started through PATH.
    private let executable: String = {
        let argv0 = CommandLine.arguments.first ?? ""
        if argv0.hasPrefix("/") { return argv0 }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        if argv0.contains("/"), getcwd(&buffer, buffer.count) != nil {
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + argv0
        }
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return argv0 }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    private static func environment() -> [String] {
        var result: [String] = []
        var cursor = environ
        while let entry = cursor.pointee {
            result.append(String(cString: entry))
            cursor += 1
        }
        return result
    }

    /// `waitpid`'s status, decoded by hand: the W* macros are not visible to Swift.
    struct ExitStatus: CustomStringConvertible {
        let raw: Int32
        init(_ raw: Int32) { self.raw = raw }
        var description: String {
            raw & 0x7F == 0 ? "code \((raw >> 8) & 0xFF)" : "signal \(raw & 0x7F)"
        }
        /// Exited by itself with code 0.
        var isClean: Bool { raw == 0 }
    }
}
