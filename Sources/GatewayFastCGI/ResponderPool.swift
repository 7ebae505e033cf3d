import CFastCGI
import GatewayCore
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One responder process: `threads` workers, each accepting FastCGI requests on the listening
/// socket at `listenFD` (fd 0 under spawn-fcgi and under the pool's own supervisor) with its
/// own heap-allocated `FCGX_Request`.
///
/// SIGTERM, SIGINT or SIGQUIT stop it gracefully: no new requests are accepted, requests in
/// progress finish (up to `shutdownTimeout`), then `run()` returns.
///
/// No signal ever reaches a worker: the listening socket is non-blocking and idle workers wait
/// for it with epoll (``ConnectionWaiter``: one idle worker woken per connection), beside a pipe
/// that wakes them all for shutdown; the one woken tries to accept (libfcgi answers EAGAIN when
/// another process took the connection). A signal that interrupted libfcgi while it read a
/// just-accepted connection's first records made it close that connection unanswered: nginx
/// answered 502 to a request during a reload or a recycle.
public final class ResponderPool: Sendable {
    public struct Settings: Sendable {
        public var listenFD: Int32
        public var threads: Int
        public var maxBodyBytes: Int
        public var shutdownTimeoutSeconds: Double
        /// The supervisor's pid when there is one: the responder stops once it is gone.
        public var supervisorPID: pid_t?
        /// After this many requests the process stops gracefully to be replaced (bounds slow
        /// leaks, like PHP-FPM's pm.max_requests); 0 never. Only useful under the supervisor.
        public var maxRequests: Int
        /// A request still running after this long means a stuck thread: the process exits at
        /// once and is replaced (like PHP-FPM's request_terminate_timeout); 0 never.
        public var requestTimeoutSeconds: Double
        /// Benchmarks only: answer every request 200 without looking at it, to measure the
        /// ceiling of nginx + FastCGI + the pool.
        public var trivial = false

        public init(
            listenFD: Int32 = 0, threads: Int, maxBodyBytes: Int, shutdownTimeoutSeconds: Double = 10,
            supervisorPID: pid_t? = nil, maxRequests: Int = 0, requestTimeoutSeconds: Double = 0
        ) {
            self.listenFD = listenFD
            self.threads = threads
            self.maxBodyBytes = maxBodyBytes
            self.shutdownTimeoutSeconds = shutdownTimeoutSeconds
            self.supervisorPID = supervisorPID
            self.maxRequests = maxRequests
            self.requestTimeoutSeconds = requestTimeoutSeconds
        }
    }

    /// Where a worker is: the status page's busy threads, and shutdown's wait for them.
    private final class Worker: Sendable {
        static let starting = 0, accepting = 1, busy = 2, exited = 3
        let phase = Atomic<Int>(Worker.starting)
        /// Monotonic nanoseconds when the current request was accepted.
        let busySince = Atomic<UInt64>(0)
    }

    private let settings: Settings
    private let processor: UpdateProcessor
    /// Makes each worker thread's own connections (Redis, services, Bot API).
    private let makeDependencies: @Sendable () -> ThreadDependencies
    private let logger: Logger
    private let clock: @Sendable () -> UInt64
    /// Answers requests for paths other than the webhook (metrics, health); nil: not ours.
    private let admin: (@Sendable (_ path: String, _ dependencies: ThreadDependencies) -> WebhookResponse?)?
    /// The services' send API (`/telegram-gateway/send`); nil: those paths are not served.
    private let outbound: OutboundAPI?
    /// Called about four times a second with the busy threads and the requests served so far
    /// (metrics snapshots, the status page).
    private let onTick: (@Sendable (_ busyThreads: Int, _ served: Int) -> Void)?
    /// Reopens the log file (SIGUSR1, after logrotate renamed it).
    private let onReopenLogs: (@Sendable () -> Void)?
    private let stopping = Atomic<Bool>(false)
    private let handled = Atomic<Int>(0)
    /// Readable once the process stops: wakes the worker waiting for a connection.
    private let wakeUp: (read: Int32, write: Int32)

    public init(
        settings: Settings, processor: UpdateProcessor, makeDependencies: @escaping @Sendable () -> ThreadDependencies,
        logger: Logger, clock: @escaping @Sendable () -> UInt64,
        admin: (@Sendable (_ path: String, _ dependencies: ThreadDependencies) -> WebhookResponse?)? = nil,
        outbound: OutboundAPI? = nil, onTick: (@Sendable (_ busyThreads: Int, _ served: Int) -> Void)? = nil,
        onReopenLogs: (@Sendable () -> Void)? = nil
    ) {
        self.onReopenLogs = onReopenLogs
        self.admin = admin
        self.outbound = outbound
        self.onTick = onTick
        self.settings = settings
        self.processor = processor
        self.makeDependencies = makeDependencies
        self.logger = logger
        self.clock = clock
        var ends: [Int32] = [-1, -1]
        if pipe(&ends) == 0 {
            for end in ends {
                _ = fcntl(end, F_SETFD, FD_CLOEXEC)
                _ = fcntl(end, F_SETFL, O_NONBLOCK)
            }
        }
        wakeUp = (ends[0], ends[1])
    }

    deinit {
        close(wakeUp.read)
        close(wakeUp.write)
    }

    /// Serves until a stop signal, then drains. Throws when fd `listenFD` is no listening socket.
    public func run() throws(FastCGIError) {
        guard Self.isListeningSocket(settings.listenFD) else { throw .notASocket() }

        // Stop signals and SIGUSR1 are taken by this thread with sigtimedwait (WorkerThread
        // starts the workers with them blocked).
        var signals = WorkerThread.poolSignals
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        guard wakeUp.read >= 0 else { throw .libraryInit() }
        // Shared with every process of the pool (one open socket): all of them wait with poll.
        _ = fcntl(settings.listenFD, F_SETFL, fcntl(settings.listenFD, F_GETFL) | O_NONBLOCK)
        guard FCGX_Init() == 0 else { throw .libraryInit() }

        let workers = (0..<settings.threads).map { _ in Worker() }
        var threads: [WorkerThread] = []
        for (index, worker) in workers.enumerated() {
            threads.append(try WorkerThread.start(name: "fastcgi-\(index)") { [self] in serve(worker) })
        }
        logger.info("responder started", metadata: ["threads": "\(settings.threads)", LogKey.pid: .stringConvertible(getpid())])

        let reason = waitForStop(&signals, workers: workers)
        logger.info("responder stopping", metadata: [LogKey.reason: "\(reason)", LogKey.pid: .stringConvertible(getpid())])
        stopping.store(true, ordering: .sequentiallyConsistent)
        FCGX_ShutdownPending()
        _ = write(wakeUp.write, "x", 1)

        let deadline = clock() + UInt64(settings.shutdownTimeoutSeconds * 1e9)
        while clock() < deadline, workers.contains(where: { $0.phase.load(ordering: .sequentiallyConsistent) != Worker.exited }) {
            usleep(20_000)
        }
        // Join the workers that finished; one still inside a request past the timeout is left
        // to the process's exit.
        for (worker, thread) in zip(workers, threads) {
            if worker.phase.load(ordering: .sequentiallyConsistent) == Worker.exited { thread.join() } else { thread.detach() }
        }
        let unfinished = workers.filter { $0.phase.load(ordering: .sequentiallyConsistent) == Worker.busy }.count
        if unfinished > 0 {
            logger.warning("responder stopped with requests unfinished", metadata: ["unfinished": "\(unfinished)"])
        } else {
            logger.info("responder stopped", metadata: [LogKey.pid: .stringConvertible(getpid())])
        }
    }

    /// Blocks until a stop signal arrives, the supervisor is gone or the process has served its
    /// `maxRequests`; says which. Exits the process at once when a request overruns its deadline.
    private func waitForStop(_ signals: inout sigset_t, workers: [Worker]) -> String {
        var interval = timespec(tv_sec: 0, tv_nsec: 250_000_000)
        while true {
            let received = sigtimedwait(&signals, nil, &interval)
            if received == SIGUSR1 {
                onReopenLogs?()
                continue
            }
            if received > 0 { return "signal \(received)" }
            onTick?(workers.filter { $0.phase.load(ordering: .relaxed) == Worker.busy }.count, handled.load(ordering: .relaxed))
            if let supervisor = settings.supervisorPID, getppid() != supervisor { return "supervisor gone" }
            if settings.maxRequests > 0, handled.load(ordering: .relaxed) >= settings.maxRequests { return "max requests served" }
            if settings.requestTimeoutSeconds > 0 {
                let limit = UInt64(settings.requestTimeoutSeconds * 1e9)
                let now = clock()
                let stuck = workers.filter { worker in
                    let since = worker.busySince.load(ordering: .relaxed)
                    return worker.phase.load(ordering: .relaxed) == Worker.busy && since > 0 && now > since && now - since > limit
                }
                if !stuck.isEmpty {
                    // A thread cannot be stopped safely from outside; the process is replaced, as
                    // PHP-FPM replaces a worker past request_terminate_timeout.
                    logger.critical(
                        "request stuck past REQUEST_TIMEOUT; replacing this process", metadata: ["stuck_threads": .stringConvertible(stuck.count)])
                    _exit(70)
                }
            }
        }
    }

    private func serve(_ worker: Worker) {
        let request = FastCGIRequest(listenFD: settings.listenFD)
        let waiter = ConnectionWaiter(listenFD: settings.listenFD, wakeFD: wakeUp.read)
        if waiter == nil { logger.warning("no epoll set for a worker; it polls the listening socket", metadata: ["errno": "\(errno)"]) }
        let dependencies = makeDependencies()
        var failures = 0
        while !stopping.load(ordering: .sequentiallyConsistent) {
            worker.phase.store(Worker.accepting, ordering: .sequentiallyConsistent)
            switch nextConnection(request, waiter: waiter) {
            case .request:
                break
            case .none:
                continue
            case .failed:
                // A broken socket: back off a little so it cannot spin the CPU.
                failures += 1
                if !stopping.load(ordering: .sequentiallyConsistent) { usleep(UInt32(min(failures, 100)) * 1000) }
                continue
            }
            failures = 0
            worker.busySince.store(clock(), ordering: .relaxed)
            worker.phase.store(Worker.busy, ordering: .sequentiallyConsistent)
            respond(to: request, with: dependencies)
            request.finish()
            handled.add(1, ordering: .relaxed)
        }
        worker.phase.store(Worker.exited, ordering: .sequentiallyConsistent)
    }

    /// Takes a connection that is already waiting, else waits for one (or the wake-up) and
    /// tries to take it. Under load one is usually waiting, and the wait, a system call per
    /// request, is left to idle workers. No lock is held while libfcgi reads the connection's
    /// first records, so a slow client never keeps the other workers from accepting. Without
    /// an epoll set the worker polls, woken with every other idle worker.
    private func nextConnection(_ request: FastCGIRequest, waiter: ConnectionWaiter?) -> FastCGIRequest.Accepted {
        guard !stopping.load(ordering: .sequentiallyConsistent) else { return .none }
        switch request.accept() {
        case .request: return .request
        case .failed: return .failed
        case .none: break
        }
        if let waiter {
            switch waiter.wait() {
            case .connection: break
            case .stop: return .none
            case .failed: return .failed
            }
        } else {
            var waiting = [
                pollfd(fd: settings.listenFD, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeUp.read, events: Int16(POLLIN), revents: 0),
            ]
            guard poll(&waiting, 2, -1) > 0, waiting[1].revents == 0 else { return .none }
        }
        return request.accept()
    }

    private func respond(to request: FastCGIRequest, with dependencies: ThreadDependencies) {
        if settings.trivial {
            request.write(.acknowledged)
            return
        }
        let (uri, head) = FastCGIParameters.head(acceptedAt: clock()) { request.parameter($0) }
        if let admin, let uri, uri != "/webhook/telegram", let response = admin(uri, dependencies) {
            request.write(response)
            return
        }
        if let outbound, let uri, OutboundAPI.handles(uri) {
            let response =
                outbound.admit(head, path: uri, logger: logger)
                ?? outbound.handle(
                    head, path: uri, body: request.readBody(limit: OutboundAPI.maxBodyBytes, expected: head.contentLength), with: dependencies,
                    logger: logger)
            request.write(response)
            return
        }
        let response =
            processor.admit(head, logger: logger)
            ?? processor.handle(
                head, body: request.readBody(limit: settings.maxBodyBytes, expected: head.contentLength), with: dependencies, logger: logger)
        if !request.write(response) {
            logger.info("web server closed the connection before the answer", metadata: [LogKey.requestID: "\(head.requestID)"])
        }
    }

    private static func isListeningSocket(_ fd: Int32) -> Bool {
        var accepting: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) == 0 && accepting == 1
    }
}

/// Request ids: nginx's `$request_id` when it passes one, else a fresh random one.
enum RequestID {
    /// Accepts 1–64 characters of letters, digits, `-` and `_`; anything else is replaced.
    static func sanitized(_ bytes: [UInt8]?) -> String? {
        guard let bytes, (1...64).contains(bytes.count),
            bytes.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || $0 == 0x2D || $0 == 0x5F })
        else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        return Digits.hex(high) + Digits.hex(low)
    }
}
