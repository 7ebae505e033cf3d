import ArgumentParser
import CoreMetrics
import GatewayAssembly
import GatewayCore
import GatewayFastCGI
import GatewayMetrics
import GatewayRuntime
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

@main
struct TelegramGateway: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "telegram-gateway",
        abstract: "FastCGI responder pool for Telegram webhooks, behind nginx.",
        discussion: """
            With no --socket or --port it serves the listening socket on fd 0, as spawn-fcgi \
            and the pool's own supervisor hand it over. With --socket or --port it is the \
            supervisor: it opens the socket, starts --processes children and restarts any that dies.
            Configuration comes from the environment, with --env-file as fallback.
            Signals: SIGTERM/SIGINT/SIGQUIT drain and stop; SIGHUP (supervisor) checks the \
            configuration and replaces the children only if it passes; SIGUSR1 reopens LOG_FILE.
            """,
        version: GatewayVersion.current)

    @Option(help: "Unix socket to listen on (runs the supervisor).")
    var socket: String?

    @Option(help: "TCP port to listen on (runs the supervisor).")
    var port: Int?

    @Option(help: "IPv4 address for --port.")
    var bind: String = "127.0.0.1"

    @Option(help: "Responder processes under the supervisor (default: GATEWAY_PROCESSES).")
    var processes: Int?

    @Option(help: "Threads per responder process (default: GATEWAY_THREADS).")
    var threads: Int?

    @Option(help: "Octal mode of the unix socket; nginx reaches it through the group.")
    var socketMode: String = "0660"

    @Option(help: "Group of the unix socket (nginx's user must be a member).")
    var socketGroup: String?

    @Option(help: "File of KEY=value lines; the environment wins over it.")
    var envFile: String = ".env"

    @Option(help: "Seconds to let requests in progress finish on SIGTERM.")
    var shutdownTimeout: Double = 10

    @Flag(help: "Validate the configuration, print what is wrong, and exit.")
    var checkConfig = false

    @Flag(help: .hidden)
    var trivial = false

    @Flag(help: "Print nginx's secret map for the configured webhook secrets, and exit.")
    var printNginxSecretMap = false

    func validate() throws {
        if socket != nil && port != nil { throw ValidationError("give --socket or --port, not both") }
        if let port, !(1...65535).contains(port) { throw ValidationError("--port must be 1-65535") }
        if let processes, !(1...256).contains(processes) { throw ValidationError("--processes must be 1-256") }
        if let threads, !(1...1024).contains(threads) { throw ValidationError("--threads must be 1-1024") }
        if mode_t(socketMode, radix: 8) == nil { throw ValidationError("--socket-mode must be octal, e.g. 0660") }
        if !(0.1...600).contains(shutdownTimeout) { throw ValidationError("--shutdown-timeout must be 0.1-600 seconds") }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        // SIGUSR1 (reopen the log file) must never end the process, however early it comes:
        // blocked from the start, taken later by the pool's or the supervisor's main thread.
        var reopen = sigset_t()
        sigemptyset(&reopen)
        sigaddset(&reopen, SIGUSR1)
        pthread_sigmask(SIG_BLOCK, &reopen, nil)
        let config: GatewayConfig
        let routes: RouteTable
        let services: [ServiceName: GatewayConfig.ServiceSettings]
        do {
            config = try loadConfiguration(envFile: envFile)
            (routes, services) = try loadRoutes(config)
        } catch {
            printError("telegram-gateway: \(error)")
            throw ExitCode(78)  // EX_CONFIG
        }
        if checkConfig {
            print("configuration is valid")
            return
        }
        if printNginxSecretMap {
            print(NginxSecretMap.render(config.webhookSecrets), terminator: "")
            return
        }
        let logger = bootstrapLogging(config)
        do {
            if socket != nil || port != nil {
                try runSupervisor(config: config, logger: logger)
            } else {
                try runResponder(config: config, routes: routes, services: services, logger: logger)
            }
        } catch {
            logger.critical("cannot serve", metadata: [LogKey.error: "\(error)"])
            printError("telegram-gateway: \(error)")
            throw ExitCode(71)  // EX_OSERR
        }
    }

    private func runResponder(
        config: GatewayConfig, routes: RouteTable, services: [ServiceName: GatewayConfig.ServiceSettings], logger: Logger
    ) throws(FastCGIError) {
        let supervisor = getenv(Supervisor.parentVariable).flatMap { pid_t(String(cString: $0)) }
        let metrics = PoolMetrics()
        MetricsSystem.bootstrap(metrics)
        let files = MetricsFiles(directory: config.metricsDirectory)
        files.createDirectory()
        let gateway = makeGateway(config: config, routes: routes, services: services, logger: logger)
        let inFlight = Gauge(label: PoolStatus.busy)
        Gauge(label: PoolStatus.threads).record(threads ?? config.pool.threads)
        let served = Counter(label: PoolStatus.requests)
        let counted = Locked(0)
        let circuits = services.keys.map { ($0, Gauge(label: GatewayMetric.circuitOpen, dimensions: [("service", $0.rawValue)])) }
        let admin = AdminEndpoints(
            services: Array(services.keys), breaker: gateway.breaker, renderMetrics: { files.render() },
            renderStatus: { PoolStatus.render(files) })
        var settings = ResponderPool.Settings(
            threads: threads ?? config.pool.threads, maxBodyBytes: config.maxBodyBytes,
            shutdownTimeoutSeconds: shutdownTimeout, supervisorPID: supervisor,
            // Replacing a process needs someone to start the next one: the supervisor
            // (spawn-fcgi starts children once and never again).
            maxRequests: supervisor == nil ? 0 : config.pool.maxRequests,
            requestTimeoutSeconds: supervisor == nil ? 0 : config.pool.requestTimeoutSeconds)
        settings.trivial = trivial  // scripts/bench's ceiling of nginx + FastCGI + the pool
        // Every thread holds a Redis connection and libcurl handles (each ~1-2 descriptors).
        raiseOpenFileLimit()
        let pool = ResponderPool(
            settings: settings, processor: gateway.processor, makeDependencies: { gateway.makeDependencies() },
            logger: logger, clock: monotonicNanoseconds,
            admin: { path, dependencies in admin.respond(to: path, dependencies: dependencies) }, outbound: gateway.outboundAPI,
            onTick: { busy, handled in
                inFlight.record(busy)
                for (service, gauge) in circuits { gauge.record(gateway.breaker.state(of: service) == .open ? 1 : 0) }
                served.increment(
                    by: counted.withLock { counted in
                        defer { counted = handled }
                        return handled - counted
                    })
                files.write(metrics.snapshot())
            },
            onReopenLogs: {
                if reopenLogFile() { logger.info("log file reopened") }
            })
        // Stream workers run in both modes: in sync mode they take busy users' updates and the
        // rest of answers the chat's window did not allow.
        var workers: StreamWorkers?
        var workerThreads: [WorkerThread] = []
        if !trivial {
            let started = gateway.makeWorkers(processes: processes ?? config.pool.processes)
            let running = Atomic<Int>(started.loops)
            for index in 0..<started.loops {
                workerThreads.append(
                    try WorkerThread.start(name: "worker-\(index)") {
                        started.runWorker(index, partitions: gateway.makePartitionStore(), dependencies: gateway.makeDependencies(forWorker: true))
                        running.subtract(1, ordering: .sequentiallyConsistent)
                    })
            }
            workerThreads.append(
                try WorkerThread.start(name: "heartbeat") {
                    started.runHeartbeat(partitions: gateway.makePartitionStore()) { running.load(ordering: .sequentiallyConsistent) == 0 }
                })
            logger.info(
                "stream workers started",
                metadata: ["workers": .stringConvertible(config.queue.workers), "partitions": .stringConvertible(config.queue.partitions)])
            workers = started
        }
        try pool.run()
        // The webhook is closed; workers finish the entry in hand (one cut short is claimed
        // again by the partition's next holder) and release their partitions.
        workers?.stop()
        for thread in workerThreads { thread.join() }
        files.write(metrics.snapshot())
    }

    /// Each thread holds a Redis connection and a service and Bot API connection: lift the
    /// soft limit on open files to the hard one, as servers with many connections do.
    private func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    private func runSupervisor(config: GatewayConfig, logger: Logger) throws(FastCGIError) {
        let address: ListenAddress
        if let socket {
            address = .unix(path: socket, mode: mode_t(socketMode, radix: 8) ?? 0o660, group: socketGroup)
        } else {
            address = .tcp(host: bind, port: port ?? 0)
        }
        let listenFD = try ListeningSocket.open(address)
        let files = MetricsFiles(directory: config.metricsDirectory)
        files.prepare()
        var childArguments = ["--threads", "\(threads ?? config.pool.threads)", "--shutdown-timeout", "\(shutdownTimeout)"]
        if trivial { childArguments.append("--trivial") }
        childArguments += ["--env-file", absolutePath(envFile)]
        let supervisor = Supervisor(
            settings: .init(
                listenFD: listenFD, processes: processes ?? config.pool.processes, childArguments: childArguments,
                shutdownTimeoutSeconds: shutdownTimeout, socketPath: socket,
                preflightArguments: ["--check-config", "--env-file", absolutePath(envFile)]),
            logger: logger, clock: monotonicNanoseconds,
            onChange: { processes, restarts, lastReloadFailed in
                PoolStatus.writeSupervisor(files, processes: processes, restarts: restarts, lastReloadFailed: lastReloadFailed)
                // A child exited or was recycled: its counters join the retired ones, its file goes.
                files.foldExited()
            }, onReopenLogs: { reopenLogFile() })
        try supervisor.run()
    }
}
