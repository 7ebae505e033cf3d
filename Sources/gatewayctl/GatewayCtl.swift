import ArgumentParser
import GatewayCore
import GatewayHTTP
import GatewayRedis
import GatewayRuntime
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The operator's tool: the Telegram side of the gateway (webhook), and a check of everything
/// the gateway depends on. Shares the gateway's configuration (environment, then --env-file).
@main
struct GatewayCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gatewayctl",
        abstract: "Set and inspect the Telegram webhook, check the gateway's configuration, inspect the queue, send messages.",
        subcommands: [
            SetWebhook.self, WebhookInfoCommand.self, DeleteWebhook.self, CheckConfig.self, QueueStatus.self, DeadLetters.self,
            Send.self, Broadcast.self,
        ])
}

struct CommonOptions: ParsableArguments {
    @Option(help: "File of KEY=value lines; the environment wins over it.")
    var envFile: String = ".env"

    func load() throws -> GatewayConfig {
        do {
            return try loadConfiguration(envFile: envFile)
        } catch {
            printError("gatewayctl: \(error)")
            throw ExitCode(78)
        }
    }
}

struct SetWebhook: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-webhook",
        abstract: "Point Telegram at the gateway, with the configured secret.",
        discussion: """
            max_connections defaults to the pool's capacity (GATEWAY_PROCESSES x GATEWAY_THREADS, \
            at most 100): more connections than threads only queue at nginx. allowed_updates \
            comes from the route table, so Telegram sends nothing the gateway would ignore.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "The public HTTPS URL of /webhook/telegram.")
    var url: String

    @Option(help: "Connections Telegram may open at once (1-100).")
    var maxConnections: Int?

    @Flag(help: "Drop the updates waiting at Telegram.")
    var dropPendingUpdates = false

    func run() throws {
        let config = try common.load()
        let routes = try loadRoutes(config).0
        let capacity = min(100, max(1, maxConnections ?? config.pool.processes * config.pool.threads))
        var parameters = JSONWriter()
        parameters.field("url", url)
        parameters.field("secret_token", config.webhookSecrets[0].reveal())
        parameters.field("max_connections", Int64(capacity))
        parameters.field("allowed_updates", json: JSONValue.array(routes.allowedUpdates.map { .string($0.rawValue) }).serialized)
        if dropPendingUpdates { parameters.field("drop_pending_updates", true) }
        _ = try BotAPICall(config: config).call("setWebhook", parameters.finish())
        print("Webhook set: \(url) (max_connections \(capacity), updates: \(routes.allowedUpdates.map(\.rawValue).joined(separator: ", ")))")
    }
}

struct WebhookInfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "webhook-info", abstract: "What Telegram says about the webhook, in plain words.")

    @OptionGroup var common: CommonOptions

    func run() throws {
        let config = try common.load()
        let body = try BotAPICall(config: config).call("getWebhookInfo", Array("{}".utf8))
        guard let info = WebhookInfo.parse(body) else {
            printError("gatewayctl: the Bot API's answer is not a webhook info")
            throw ExitCode.failure
        }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        print(info.report(now: Int(now.tv_sec)))
    }
}

struct DeleteWebhook: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete-webhook", abstract: "Stop Telegram from posting updates.")

    @OptionGroup var common: CommonOptions

    @Flag(help: "Drop the updates waiting at Telegram.")
    var dropPendingUpdates = false

    func run() throws {
        let config = try common.load()
        _ = try BotAPICall(config: config).call("deleteWebhook", Array((dropPendingUpdates ? #"{"drop_pending_updates":true}"# : "{}").utf8))
        print("Webhook deleted.")
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate the configuration and reach Redis and every service.")

    @OptionGroup var common: CommonOptions

    func run() throws {
        let config = try common.load()
        let (_, services) = try loadRoutes(config)
        print("configuration: ok")
        var failures = 0
        let store = RedisStateStore(
            config: config.redis, policy: config.statePolicy, warnings: DependencyWarnings(clock: monotonicNanoseconds),
            logger: Logger(label: "gatewayctl", factory: { _ in SwiftLogNoOpLogHandler() }), clock: monotonicNanoseconds)
        do {
            try store.ping()
            print("redis: ok")
        } catch {
            failures += 1
            print("redis: FAILED (\(error.shortDescription)); the gateway would run without rate limits, sessions and dedupe")
        }
        let client = try HTTPClient()
        for name in services.keys.sorted(by: { $0.rawValue < $1.rawValue }) {
            guard let service = services[name] else { continue }
            do {
                try client.probe(service.url, timeoutSeconds: min(2, service.timeoutSeconds))
                print("service \(name): reachable (\(service.url))")
            } catch {
                failures += 1
                print("service \(name): FAILED (\(error.shortDescription)) at \(service.url)")
            }
        }
        if failures > 0 { throw ExitCode.failure }
    }
}

/// One Bot API call for gatewayctl. Prints Telegram's own error description, never the URL
/// (it holds the token).
struct BotAPICall {
    let config: GatewayConfig

    func call(_ method: String, _ parameters: [UInt8]) throws -> [UInt8] {
        let client = try HTTPClient()
        let response: HTTPResponse
        do {
            response = try client.send(
                HTTPRequest(
                    method: "POST", url: "\(config.telegramAPIBaseURL)/bot\(config.botToken.reveal())/\(method)",
                    headers: [("Content-Type", "application/json")], body: parameters, timeoutSeconds: 15))
        } catch {
            printError("gatewayctl: \(method) failed: \(error.shortDescription)")
            throw ExitCode.failure
        }
        guard (200..<300).contains(response.status) else {
            printError("gatewayctl: \(method) failed (\(response.status)): \(BotAPIResponse.description(of: response.body))")
            throw ExitCode.failure
        }
        return response.body
    }
}
