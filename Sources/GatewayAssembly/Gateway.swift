import GatewayCore
import GatewayHTTP
import GatewayRedis
import GatewayRuntime
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The gateway assembled from its configuration: the processor every thread shares, and how a
/// thread makes its own connections. The executable calls `makeGateway(config:…)` and runs the
/// result on its threads; tests build the same thing.
public struct Gateway: Sendable {
    public let config: GatewayConfig
    public let processor: UpdateProcessor
    /// Per service, shared by a process's threads.
    public let breaker: CircuitBreaker
    public let services: [ServiceName: GatewayConfig.ServiceSettings]
    public let clock: GatewayClock
    let warnings: DependencyWarnings
    /// What the process knows of the bot-wide budget, shared by its threads' stores.
    let botBudget: BotBudgetGate
    let logger: Logger

    /// One thread's connections: a Redis connection (state, outgoing limits, the streams),
    /// a libcurl handle per service and one for the Bot API. A stream worker's Redis commands
    /// may take up to a second (nobody waits on them but its own deadline); a webhook thread's
    /// give up after `REDIS_COMMAND_TIMEOUT` and fail open.
    public func makeDependencies(forWorker: Bool = false) -> ThreadDependencies {
        var redis = config.redis
        if forWorker { redis.commandTimeoutSeconds = max(redis.commandTimeoutSeconds, Self.workerCommandTimeoutSeconds) }
        let store = RedisStateStore(
            config: redis, policy: config.statePolicy, warnings: warnings, logger: logger, clock: clock.now, botBudget: botBudget)
        return ThreadDependencies(
            state: store, services: CurlServiceClient(services: services, breaker: breaker, clock: clock.now),
            botAPI: CurlBotAPI(baseURL: config.telegramAPIBaseURL, token: config.botToken, clock: clock.now), outgoing: store,
            queue: RedisUpdateQueue(store: store, settings: config.queue),
            outbound: RedisOutboundStore(store: store, partitions: config.queue.partitions),
            tokens: ClaimTokens(prefix: Self.randomPrefix()))
    }

    /// The services' send API, served by every process.
    public var outboundAPI: OutboundAPI { OutboundAPI(config: config, clock: clock) }

    /// The process's stream workers; `processes` (GATEWAY_PROCESSES) bounds its share until the fleet
    /// registry lists the processes started with it.
    public func makeWorkers(processes: Int) -> StreamWorkers {
        StreamWorkers(
            settings: config.queue, processes: processes, processor: processor, clock: clock, logger: logger,
            prefix: "\(Self.hostName())-\(getpid())-\(Self.randomPrefix())")
    }

    static let workerCommandTimeoutSeconds = 1.0

    /// A worker thread's own connection to the streams.
    public func makePartitionStore() -> any PartitionStore {
        RedisPartitionStore(redis: config.redis, blockMilliseconds: StreamWorkers.blockMilliseconds, clock: clock.now)
    }

    /// Random per thread and process, so tokens and worker names never meet.
    private static func randomPrefix() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(generator.next() as UInt32, radix: 36) + String(getpid(), radix: 36)
    }

    private static func hostName() -> String {
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        return String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Assembles the gateway: `routes` and `services` as `loadRoutes` gave them.
public func makeGateway(
    config: GatewayConfig, routes: RouteTable, services: [ServiceName: GatewayConfig.ServiceSettings], logger: Logger,
    clock: GatewayClock = systemClock
) -> Gateway {
    HTTPClient.initializeLibrary()
    return Gateway(
        config: config,
        processor: UpdateProcessor(settings: .init(config: config, routes: routes), clock: clock, newInternalUserID: makeInternalUserID),
        breaker: CircuitBreaker(openSeconds: config.circuitOpenSeconds, clock: clock.now), services: services, clock: clock,
        warnings: DependencyWarnings(clock: clock.now), botBudget: BotBudgetGate(clock: clock.now), logger: logger)
}
