import Logging

/// The gateway's whole configuration, loaded once at start from the environment (with `.env`
/// as fallback) and passed down; nothing reads the environment after start.
public struct GatewayConfig: Sendable {
    public var botToken: Secret
    /// The current webhook secret first, then the previous one while a rotation is under way.
    public var webhookSecrets: [Secret]
    /// The bot's username without `@`; lets group commands for other bots be ignored.
    public var botUsername: String?
    public var redis: RedisSettings
    public var sessionTTLSeconds: Int
    /// How long a processed update is remembered, so Telegram's redelivery of it is recognised.
    public var dedupeTTLSeconds: Int
    /// Every update's deadline from its acceptance (`UPDATE_DEADLINE`): what Telegram and nginx
    /// wait for on the webhook path, and a worker's bound per attempt. Every wait below takes
    /// the smaller of its own limit and what this leaves.
    public var updateDeadlineSeconds: Double
    public var rateLimit: RateLimitSettings
    public var services: [ServiceName: ServiceSettings]
    public var logLevel: Logger.Level
    public var logFormat: LogLineHandler.Format
    /// Where log lines go; `nil` is standard error.
    public var logFile: String?
    public var maxBodyBytes: Int
    public var pool: PoolSettings
    /// Send the last Bot API call of an answer as the webhook reply (`WEBHOOK_REPLY`, on by default).
    public var webhookReply: Bool
    /// Where Bot API calls go: Telegram's, or a stand-in in local runs and tests.
    public var telegramAPIBaseURL: String
    /// The public URL Telegram should post to (`WEBHOOK_URL`): `gatewayctl set-webhook`'s
    /// default, and what `gatewayctl webhook-info` compares Telegram's URL with.
    public var webhookURL: String?
    /// A routes file to apply to the default route table (see ``RouteFile``).
    public var routesFile: String?
    /// How long a failing service's circuit stays open.
    public var circuitOpenSeconds: Double
    public var outgoingLimits: OutgoingLimits
    /// Where each process writes its metrics for the pool-wide /metrics.
    public var metricsDirectory: String
    /// Requests slower than this are logged as slow, with their timings.
    public var slowRequestSeconds: Double
    public var deliveryMode: DeliveryMode
    public var queue: QueueSettings
    /// The outbound API's bearer tokens: the current one first, then the previous one while a
    /// rotation is under way. Empty: the API is off.
    public var serviceAPITokens: [Secret]
    /// Outbound recipients not yet done past which a new request gets 503 + Retry-After.
    public var outboundMaxBacklog: Int

    public struct RedisSettings: Sendable, Equatable {
        public var host: String
        public var port: Int
        /// A unix socket path; when set it wins over host and port.
        public var socket: String?
        public var password: Secret?
        public var database: Int
        public var connectTimeoutSeconds: Double
        public var commandTimeoutSeconds: Double
        /// Seed nodes of a Redis Cluster (`REDIS_CLUSTER_NODES`); empty for one server. The
        /// gateway learns the rest of the cluster and its slots from them.
        public var clusterNodes: [HostPort]

        public init(
            host: String, port: Int, socket: String?, password: Secret?, database: Int, connectTimeoutSeconds: Double, commandTimeoutSeconds: Double,
            clusterNodes: [HostPort] = []
        ) {
            self.clusterNodes = clusterNodes
            self.host = host
            self.port = port
            self.socket = socket
            self.password = password
            self.database = database
            self.connectTimeoutSeconds = connectTimeoutSeconds
            self.commandTimeoutSeconds = commandTimeoutSeconds
        }
    }

    /// A TCP address, `host:port`.
    public struct HostPort: Sendable, Equatable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `host:port`, `[v6]:port`; nil for anything else.
        public init?(_ text: some StringProtocol) {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
                return nil
            }
            var host = String(text[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty, !host.contains(" "), !host.contains(","), !host.contains("/") else { return nil }
            self.init(host: host, port: port)
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public struct RateLimitSettings: Sendable, Equatable {
        public var requests: Int
        public var windowSeconds: Double
    }

    public struct ServiceSettings: Sendable, Equatable {
        public var url: String
        public var timeoutSeconds: Double

        public init(url: String, timeoutSeconds: Double) {
            self.url = url
            self.timeoutSeconds = timeoutSeconds
        }
    }

    public struct PoolSettings: Sendable, Equatable {
        public var processes: Int
        public var threads: Int
        /// Requests a process serves before it is replaced (0: never); needs the supervisor.
        public var maxRequests: Int
        /// Seconds after which a still-running request gets its process replaced (0: never).
        public var requestTimeoutSeconds: Double
    }

    /// nginx's `fastcgi_read_timeout` in the shipped location snippet: past it nginx answers
    /// 504 and Telegram delivers the update again, so the update's deadline must end before.
    public static let nginxReadTimeoutSeconds = 55.0
    /// How long Telegram waits for an answer before it gives up and delivers again.
    public static let telegramWaitSeconds = 60.0
    /// The longest `UPDATE_DEADLINE`: 5 s below nginx's read timeout, so the answer (and the
    /// log line) are written before nginx or Telegram give up.
    public static let maxUpdateDeadlineSeconds = nginxReadTimeoutSeconds - 5

    /// Environment variables naming each service's URL and timeout, with their defaults.
    static let serviceVariables: [(name: ServiceName, url: String, defaultURL: String, timeout: String, defaultTimeout: Double)] = [
        (.conversation, "CONVERSATION_SERVICE_URL", "http://127.0.0.1:8101", "CONVERSATION_TIMEOUT", 5),
        (.userProfile, "USER_PROFILE_SERVICE_URL", "http://127.0.0.1:8102", "USER_PROFILE_TIMEOUT", 3),
        (.matching, "MATCHING_SERVICE_URL", "http://127.0.0.1:8103", "MATCHING_TIMEOUT", 3),
        (.notification, "NOTIFICATION_SERVICE_URL", "http://127.0.0.1:8104", "NOTIFICATION_TIMEOUT", 3),
    ]

    /// Reads and validates every variable; throws one error listing every problem found.
    public static func load(environment: [String: String]) throws(ConfigError) -> GatewayConfig {
        var reader = EnvironmentReader(environment)
        let botToken = reader.secret(
            "TELEGRAM_BOT_TOKEN", required: true, pattern: .botToken,
            form: "the token from @BotFather, digits:characters")
        let currentSecret = reader.secret(
            "TELEGRAM_WEBHOOK_SECRET", required: true, pattern: .webhookSecret,
            form: "1-256 characters of A-Z, a-z, 0-9, _ and -")
        let previousSecret = reader.secret(
            "TELEGRAM_WEBHOOK_SECRET_PREVIOUS", required: false, pattern: .webhookSecret,
            form: "1-256 characters of A-Z, a-z, 0-9, _ and -")
        let botUsername = reader.optionalString(
            "TELEGRAM_BOT_USERNAME", matching: .botUsername, form: "a bot username, 5-32 of A-Z, a-z, 0-9 and _, without @")

        var redis = RedisSettings(
            host: reader.string("REDIS_HOST", default: "127.0.0.1"),
            port: reader.integer("REDIS_PORT", default: 6379, in: 1...65535),
            socket: reader.optionalString("REDIS_SOCKET", matching: nil, form: "a unix socket path"),
            password: reader.secret("REDIS_PASSWORD", required: false, pattern: .anything, form: "any text"),
            database: reader.integer("REDIS_DB", default: 0, in: 0...15),
            connectTimeoutSeconds: reader.seconds("REDIS_CONNECT_TIMEOUT", default: 0.05, in: 0.001...10),
            commandTimeoutSeconds: reader.seconds("REDIS_COMMAND_TIMEOUT", default: 0.05, in: 0.001...10))
        if let nodes = reader.optionalString("REDIS_CLUSTER_NODES", matching: nil, form: "host:port,host:port,…") {
            let parsed = nodes.split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }.map { HostPort($0) }
            if parsed.isEmpty || parsed.contains(nil) {
                reader.problem("REDIS_CLUSTER_NODES", "expected host:port seeds separated by commas, e.g. 10.0.0.1:7000,10.0.0.2:7000")
            }
            redis.clusterNodes = parsed.compactMap { $0 }
            for other in ["REDIS_HOST", "REDIS_PORT", "REDIS_SOCKET"] where environment[other].map({ !$0.isEmpty }) == true {
                reader.problem(other, "is set with REDIS_CLUSTER_NODES: give one or the other")
            }
            if redis.database != 0 { reader.problem("REDIS_DB", "must be 0 with REDIS_CLUSTER_NODES (a cluster has one database)") }
        }
        let sessionTTL = reader.integer("SESSION_TTL", default: 86_400, in: 60...2_592_000)
        let dedupeTTL = reader.integer("DEDUPE_TTL", default: 86_400, in: 60...604_800)
        let deadline = reader.seconds("UPDATE_DEADLINE", default: 25, in: 1...maxUpdateDeadlineSeconds)
        let rateLimit = RateLimitSettings(
            requests: reader.integer("RATE_LIMIT_REQUESTS", default: 1, in: 1...10_000),
            windowSeconds: reader.seconds("RATE_LIMIT_WINDOW", default: 1, in: 0.001...86_400))

        var services: [ServiceName: ServiceSettings] = [:]
        for variables in serviceVariables {
            services[variables.name] = ServiceSettings(
                url: reader.httpURL(variables.url, default: variables.defaultURL),
                timeoutSeconds: reader.seconds(variables.timeout, default: variables.defaultTimeout, in: 0.05...55))
        }

        let logLevel = reader.choice("LOG_LEVEL", default: .info, choices: Self.logLevels)
        let logFormat = reader.choice(
            "LOG_FORMAT", default: .json,
            choices: Dictionary(uniqueKeysWithValues: LogLineHandler.Format.allCases.map { ($0.rawValue, $0) }))
        let logFile = reader.optionalString("LOG_FILE", matching: nil, form: "a file path")
        let maxBodyBytes = reader.integer("MAX_BODY_BYTES", default: 1_048_576, in: 1024...67_108_864)
        let pool = PoolSettings(
            processes: reader.integer("GATEWAY_PROCESSES", default: 2, in: 1...256),
            threads: reader.integer("GATEWAY_THREADS", default: 8, in: 1...1024),
            maxRequests: reader.integer("MAX_REQUESTS", default: 0, in: 0...100_000_000),
            requestTimeoutSeconds: reader.seconds("REQUEST_TIMEOUT", default: 60, in: 0...3600))

        let webhookReply = reader.choice(
            "WEBHOOK_REPLY", default: true, choices: ["ON": true, "OFF": false, "TRUE": true, "FALSE": false, "1": true, "0": false])
        let apiBase = reader.httpURL("TELEGRAM_API_BASE_URL", default: "https://api.telegram.org")
        let routesFile = reader.optionalString("ROUTES_FILE", matching: nil, form: "a file path")
        let webhookURL = reader.optionalString("WEBHOOK_URL", matching: nil, form: "https://HOST[:PORT]/webhook/telegram")
        if let webhookURL, let problem = Self.webhookURLProblem(webhookURL) { reader.problem("WEBHOOK_URL", problem) }
        let circuitOpen = reader.seconds("CIRCUIT_OPEN_SECONDS", default: 10, in: 0.1...600)
        let metricsDirectory = reader.string("METRICS_DIR", default: "/run/telegram-gateway/metrics")
        let slowRequest = reader.seconds("SLOW_REQUEST", default: 5, in: 0.001...3600)
        var outgoing = OutgoingLimits()
        outgoing.botMessagesPerSecond = reader.integer("OUTGOING_PER_SECOND", default: 30, in: 0...100_000)

        let deliveryMode = reader.choice(
            "DELIVERY_MODE", default: .sync,
            choices: Dictionary(uniqueKeysWithValues: DeliveryMode.allCases.map { ($0.rawValue.uppercased(), $0) }))
        let queue = queueSettings(&reader, processes: pool.processes)
        let apiForm = "16-256 characters of A-Z, a-z, 0-9, _ and - (scripts/run-local makes one)"
        let apiToken = reader.secret("SERVICE_API_TOKEN", required: false, pattern: .serviceAPIToken, form: apiForm)
        let previousAPIToken = reader.secret("SERVICE_API_TOKEN_PREVIOUS", required: false, pattern: .serviceAPIToken, form: apiForm)
        if apiToken == nil, previousAPIToken != nil {
            reader.problem("SERVICE_API_TOKEN_PREVIOUS", "is set without SERVICE_API_TOKEN; a rotation keeps both")
        }
        let outboundBacklog = reader.integer("OUTBOUND_MAX_BACKLOG", default: 100_000, in: 100...100_000_000)
        for problem in deadlineProblems(deadline: deadline, services: services, requestTimeout: pool.requestTimeoutSeconds) {
            reader.problem(problem.variable, problem.message)
        }

        guard reader.problems.isEmpty, let botToken, let currentSecret else {
            throw ConfigError(problems: reader.problems)
        }
        return GatewayConfig(
            botToken: botToken, webhookSecrets: [currentSecret] + (previousSecret.map { [$0] } ?? []),
            botUsername: botUsername, redis: redis, sessionTTLSeconds: sessionTTL, dedupeTTLSeconds: dedupeTTL,
            updateDeadlineSeconds: deadline, rateLimit: rateLimit,
            services: services, logLevel: logLevel, logFormat: logFormat, logFile: logFile,
            maxBodyBytes: maxBodyBytes, pool: pool, webhookReply: webhookReply,
            telegramAPIBaseURL: apiBase.hasSuffix("/") ? String(apiBase.dropLast()) : apiBase, webhookURL: webhookURL,
            routesFile: routesFile, circuitOpenSeconds: circuitOpen, outgoingLimits: outgoing,
            metricsDirectory: metricsDirectory, slowRequestSeconds: slowRequest, deliveryMode: deliveryMode, queue: queue,
            serviceAPITokens: (apiToken.map { [$0] } ?? []) + (apiToken == nil ? [] : previousAPIToken.map { [$0] } ?? []),
            outboundMaxBacklog: outboundBacklog)
    }

    private static func queueSettings(_ reader: inout EnvironmentReader, processes: Int) -> QueueSettings {
        let defaults = QueueSettings()
        var settings = QueueSettings(
            partitions: reader.integer("QUEUE_PARTITIONS", default: defaults.partitions, in: 1...4096),
            workers: reader.integer("QUEUE_WORKERS", default: defaults.workers, in: 1...1024),
            leaseMilliseconds: Int64(reader.seconds("QUEUE_LEASE", default: 5, in: 1...300) * 1000),
            maxAttempts: reader.integer("QUEUE_MAX_ATTEMPTS", default: defaults.maxAttempts, in: 1...100),
            maxBacklog: reader.integer("QUEUE_MAX_BACKLOG", default: defaults.maxBacklog, in: 1...10_000_000),
            maxAgeMilliseconds: Int64(reader.seconds("QUEUE_MAX_AGE", default: 60, in: 1...86_400) * 1000),
            retryAfterSeconds: reader.integer("QUEUE_RETRY_AFTER", default: defaults.retryAfterSeconds, in: 1...3600),
            callbackPromptMilliseconds: Int64(reader.seconds("QUEUE_CALLBACK_PROMPT", default: 5, in: 0...140) * 1000),
            deadLetterLimit: reader.integer("QUEUE_DEAD_LETTERS", default: defaults.deadLetterLimit, in: 100...10_000_000))
        settings.waitReplicas = reader.integer("REDIS_WAIT_REPLICAS", default: 0, in: 0...16)
        settings.waitTimeoutMilliseconds = Int64(reader.seconds("REDIS_WAIT_TIMEOUT", default: 0.1, in: 0.001...5) * 1000)
        // Every partition needs a worker of its own, or its users wait forever (in sync mode
        // too: busy users' updates and the rest of long answers wait in the streams).
        if settings.workers * processes < settings.partitions {
            reader.problem(
                "QUEUE_WORKERS",
                "\(settings.workers) workers x \(processes) processes (GATEWAY_PROCESSES) leave partitions of the \(settings.partitions) (QUEUE_PARTITIONS) without a worker; give at least as many workers as partitions"
            )
        }
        return settings
    }

    /// The state store's numbers. An update's lease lasts its deadline and a margin: everything
    /// it does ends by the deadline, so the lease only expires when its responder is gone.
    public var statePolicy: StatePolicy {
        StatePolicy(
            rateLimitRequests: rateLimit.requests,
            rateLimitWindowMilliseconds: Int64(rateLimit.windowSeconds * 1000),
            sessionTTLSeconds: sessionTTLSeconds, dedupeTTLSeconds: dedupeTTLSeconds,
            leaseMilliseconds: Int64((updateDeadlineSeconds + 5) * 1000), outgoing: outgoingLimits)
    }

    /// What is wrong with the update's deadline beside the limits below and above it: a
    /// service's timeout longer than the deadline (it could never take it), the supervisor's
    /// stuck-request limit shorter (it would kill a process for a request still in time).
    static func deadlineProblems(
        deadline: Double, services: [ServiceName: ServiceSettings], requestTimeout: Double
    ) -> [ConfigError.Problem] {
        var problems: [ConfigError.Problem] = []
        for (name, service) in services.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where service.timeoutSeconds > deadline {
            let variable = serviceVariables.first { $0.name == name }?.timeout ?? "ROUTES_FILE"
            problems.append(
                .init(
                    variable: variable,
                    message: "the \(name.rawValue) service's timeout (\(service.timeoutSeconds) s) is longer than UPDATE_DEADLINE (\(deadline) s); "
                        + "lower it or raise UPDATE_DEADLINE (at most \(maxUpdateDeadlineSeconds) s, below nginx's fastcgi_read_timeout of \(nginxReadTimeoutSeconds) s)"
                ))
        }
        if requestTimeout > 0, requestTimeout < deadline + 5 {
            problems.append(
                .init(
                    variable: "REQUEST_TIMEOUT",
                    message: "\(requestTimeout) s would replace a process whose request is still within UPDATE_DEADLINE (\(deadline) s); "
                        + "give at least UPDATE_DEADLINE + 5 s, or 0"))
        }
        return problems
    }

    /// Why Telegram would refuse `url` as a webhook, or nil: HTTPS only, on one of the ports
    /// it posts to (443, 80, 88, 8443).
    public static func webhookURLProblem(_ url: String) -> String? {
        guard url.lowercased().hasPrefix("https://") else { return "Telegram posts to https:// URLs only" }
        let authority = url.dropFirst("https://".count).prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard !authority.isEmpty, !authority.contains("@"), !url.contains(" ") else { return "expected https://HOST[:PORT]/PATH" }
        if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") {
            guard let port = Int(authority[authority.index(after: colon)...]), [443, 80, 88, 8443].contains(port) else {
                return "Telegram posts to ports 443, 80, 88 and 8443 only"
            }
        }
        return nil
    }

    /// Checks the services in effect (a routes file may add slower ones) against the deadline.
    public func check(services: [ServiceName: ServiceSettings]) throws(ConfigError) {
        let problems = Self.deadlineProblems(deadline: updateDeadlineSeconds, services: services, requestTimeout: pool.requestTimeoutSeconds)
        if !problems.isEmpty { throw ConfigError(problems: problems) }
    }

    /// The environment as the gateway sees it: `.env` values, overridden by the process environment.
    public static func merge(environment: [String: String], dotEnv: [String: String]) -> [String: String] {
        dotEnv.merging(environment) { _, fromEnvironment in fromEnvironment }
    }

    static let logLevels: [String: Logger.Level] = [
        "TRACE": .trace, "DEBUG": .debug, "INFO": .info, "NOTICE": .notice,
        "WARNING": .warning, "WARN": .warning, "ERROR": .error, "CRITICAL": .critical,
    ]
}
