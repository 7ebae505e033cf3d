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
        discussion: """
            Every command reads the gateway's configuration as the gateway does: the process \
            environment first, then the --env-file (default .env; /etc/telegram-gateway/env on \
            a host set up by DEPLOY.md). Run it as the service user (sudo -u telegram-gateway) \
            so that the file is readable and nothing else needs the secrets.
            """,
        version: GatewayVersion.current,
        subcommands: [
            SetWebhook.self, WebhookInfoCommand.self, DeleteWebhook.self, SetCommands.self, CheckConfig.self, QueueStatus.self,
            DeadLetters.self, Send.self, Broadcast.self,
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
            The URL defaults to WEBHOOK_URL. max_connections defaults to the pool's capacity \
            (GATEWAY_PROCESSES x GATEWAY_THREADS, at most 100): more connections than threads \
            only queue at nginx. allowed_updates comes from the route table, so Telegram sends \
            nothing the gateway would ignore. With a self-signed certificate, upload its public \
            part with --certificate (PEM) so that Telegram trusts it.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "The public HTTPS URL of /webhook/telegram (default: WEBHOOK_URL).")
    var url: String?

    @Option(help: "Connections Telegram may open at once (1-100).")
    var maxConnections: Int?

    @Option(help: "A self-signed certificate's public part (PEM) for Telegram to trust.")
    var certificate: String?

    @Option(help: "The IP address Telegram connects to instead of resolving the URL's host.")
    var ipAddress: String?

    @Flag(help: "Drop the updates waiting at Telegram.")
    var dropPendingUpdates = false

    func run() throws {
        let config = try common.load()
        let routes = try loadRoutes(config).0
        guard let url = url ?? config.webhookURL else {
            printError("gatewayctl: give --url or set WEBHOOK_URL")
            throw ExitCode(64)
        }
        if let problem = GatewayConfig.webhookURLProblem(url) {
            printError("gatewayctl: --url: \(problem)")
            throw ExitCode(64)
        }
        if let ipAddress, !Self.isIPAddress(ipAddress) {
            printError("gatewayctl: --ip-address: expected an IPv4 or IPv6 address")
            throw ExitCode(64)
        }
        let capacity = min(100, max(1, maxConnections ?? config.pool.processes * config.pool.threads))
        let updates = JSONValue.array(routes.allowedUpdates.map { .string($0.rawValue) }).serialized
        var fields: [(String, String)] = [
            ("url", url), ("secret_token", config.webhookSecrets[0].reveal()), ("max_connections", "\(capacity)"),
            ("allowed_updates", String(decoding: updates, as: UTF8.self)),
        ]
        if let ipAddress { fields.append(("ip_address", ipAddress)) }
        if dropPendingUpdates { fields.append(("drop_pending_updates", "true")) }
        let api = BotAPICall(config: config)
        if let certificate {
            let pem = try Self.readCertificate(certificate)
            _ = try api.call("setWebhook", form: fields, file: (field: "certificate", name: "certificate.pem", bytes: pem))
        } else {
            var parameters = JSONWriter()
            for (name, value) in fields {
                switch name {
                case "max_connections": parameters.field(name, Int64(capacity))
                case "allowed_updates": parameters.field(name, json: updates)
                case "drop_pending_updates": parameters.field(name, true)
                default: parameters.field(name, value)
                }
            }
            _ = try api.call("setWebhook", parameters.finish())
        }
        print(
            "Webhook set: \(url) (max_connections \(capacity), updates: \(routes.allowedUpdates.map(\.rawValue).joined(separator: ", "))"
                + (certificate == nil ? "" : ", certificate uploaded") + (ipAddress.map { ", ip_address \($0)" } ?? "") + ")")
    }

    /// The certificate file, if it is a PEM certificate (never a private key) of sane size.
    static func readCertificate(_ path: String) throws -> [UInt8] {
        guard let text = readFile(path) else {
            printError("gatewayctl: cannot read the certificate \(path)")
            throw ExitCode(66)
        }
        guard text.contains("-----BEGIN CERTIFICATE-----"), !text.contains("PRIVATE KEY"), text.utf8.count <= 64 * 1024 else {
            printError("gatewayctl: \(path) is not a PEM certificate (upload the public certificate, never the key)")
            throw ExitCode(65)
        }
        return Array(text.utf8)
    }

    static func isIPAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }
}

struct WebhookInfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhook-info", abstract: "What Telegram says about the webhook, in plain words or as JSON, with a monitoring exit code.",
        discussion: """
            Exit codes, as monitoring checks expect them: 0 ok; 1 warning (a delivery error in \
            the last --error-window seconds, or --warn-pending updates waiting); 2 critical (no \
            webhook, a URL other than WEBHOOK_URL, --critical-pending updates waiting, or a \
            recent error while updates wait); 3 unknown (the Bot API could not be asked).
            """)

    @OptionGroup var common: CommonOptions

    @Flag(help: "Print one JSON object (status, reasons and Telegram's fields).")
    var json = false

    @Option(help: "Updates waiting at Telegram that make a warning.")
    var warnPending = 100

    @Option(help: "Updates waiting at Telegram that make it critical.")
    var criticalPending = 1000

    @Option(help: "Seconds a delivery error counts as recent.")
    var errorWindow = 600

    @Option(help: "Also write the state as Prometheus metrics to this file (node_exporter's textfile collector).")
    var prometheus: String?

    func run() throws {
        let config = try common.load()
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let seconds = Int(now.tv_sec)
        let thresholds = WebhookInfo.Thresholds(pendingWarning: warnPending, pendingCritical: criticalPending, recentErrorSeconds: errorWindow)
        let answer = try? BotAPICall(config: config, failureCode: 3).call("getWebhookInfo", Array("{}".utf8))
        let info = answer.flatMap(WebhookInfo.parse)
        if let prometheus {
            try Self.write(WebhookInfo.prometheus(info, now: seconds, expectedURL: config.webhookURL, thresholds: thresholds), to: prometheus)
        }
        guard let info else {
            if answer != nil { printError("gatewayctl: the Bot API's answer is not a webhook info") }
            throw ExitCode(3)
        }
        let (status, reasons) = info.assess(now: seconds, expectedURL: config.webhookURL, thresholds: thresholds)
        if json {
            print(info.json(now: seconds, expectedURL: config.webhookURL, thresholds: thresholds))
        } else {
            print(info.report(now: seconds, expectedURL: config.webhookURL))
            print("Status: \(status.rawValue.uppercased())" + (reasons.isEmpty ? "" : " (\(reasons.joined(separator: "; ")))"))
        }
        if status != .ok { throw ExitCode(status.exitCode) }
    }
}

extension WebhookInfoCommand {
    /// Writes `text` to `path` through a temporary file and a rename: the collector never reads
    /// half a file.
    static func write(_ text: String, to path: String) throws {
        guard writeFileAtomically(text, to: path, mode: 0o644) else {
            printError("gatewayctl: cannot write \(path) (errno \(errno))")
            throw ExitCode(73)
        }
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

struct SetCommands: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-commands",
        abstract: "Set the bot's command menu (setMyCommands) from the route table.",
        discussion: """
            Lists every routed command that has a description: the defaults' own, or a \
            'describe COMMAND TEXT' line of ROUTES_FILE. Commands without one are routed but \
            not listed.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "Only for users with this IETF language code (e.g. de); default: everyone.")
    var languageCode: String?

    @Flag(help: "Print the request's commands and send nothing.")
    var dryRun = false

    func run() throws {
        let config = try common.load()
        let routes = try loadRoutes(config).0
        let menu = routes.menu
        guard (1...100).contains(menu.count) else {
            printError("gatewayctl: \(menu.count) described commands; Telegram takes 1-100 (add 'describe' lines to ROUTES_FILE)")
            throw ExitCode(65)
        }
        let commands = JSONValue.array(
            menu.map { .object(["command": .string($0.command), "description": .string($0.description)]) }
        ).serialized
        var parameters = JSONWriter()
        parameters.field("commands", json: commands)
        if let languageCode {
            guard languageCode.count == 2, languageCode.allSatisfy({ $0.isASCII && $0.isLowercase }) else {
                printError("gatewayctl: --language-code is two lowercase letters")
                throw ExitCode(64)
            }
            parameters.field("language_code", languageCode)
        }
        let unlisted = routes.commands.keys.filter { routes.descriptions[$0] == nil }.sorted()
        if dryRun {
            print(String(decoding: commands, as: UTF8.self))
        } else {
            _ = try BotAPICall(config: config).call("setMyCommands", parameters.finish())
            print("Command menu set: " + menu.map { "/\($0.command)" }.joined(separator: ", "))
        }
        if !unlisted.isEmpty { print("Routed but not listed (no description): " + unlisted.map { "/\($0)" }.joined(separator: ", ")) }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration, ask Telegram who the bot is (getMe), and reach Redis and every service.",
        discussion: """
            --offline validates the configuration and the routes file only: what the units' \
            ExecStartPre runs, so a start never waits on the network. Exit 78 for a \
            configuration the gateway refuses, 1 when a dependency cannot be reached.
            """)

    @OptionGroup var common: CommonOptions

    @Flag(help: "Only validate the configuration and routes; reach nothing.")
    var offline = false

    func run() throws {
        let config = try common.load()
        let services: [ServiceName: GatewayConfig.ServiceSettings]
        do {
            services = try loadRoutes(config).1
        } catch {
            printError("gatewayctl: \(error)")
            throw ExitCode(78)
        }
        print("configuration: ok")
        if offline { return }
        var failures = 0
        do {
            let me = try BotAPICall(config: config, quiet: true).call("getMe", Array("{}".utf8))
            let bot = BotAPIResponse.botIdentity(of: me)
            print("bot: ok (@\(bot?.username ?? "?"), id \(bot?.id.map(String.init) ?? "?"))")
            if let configured = config.botUsername, let username = bot?.username, configured.lowercased() != username.lowercased() {
                failures += 1
                print("bot: FAILED (TELEGRAM_BOT_USERNAME is \(configured), but the token belongs to @\(username))")
            }
        } catch let failure as BotAPICall.Failure {
            failures += 1
            print("bot: FAILED (getMe: \(failure.description))\(failure.status == 401 ? "; TELEGRAM_BOT_TOKEN is wrong or revoked" : "")")
        }
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
    /// The exit code of a failed call.
    var failureCode: Int32 = 1
    /// Throw `Failure` and print nothing (the caller reports it).
    var quiet = false

    struct Failure: Error, CustomStringConvertible {
        var status: Int?
        var description: String
    }

    func call(_ method: String, _ parameters: [UInt8]) throws -> [UInt8] {
        try send(method, contentType: "application/json", body: parameters)
    }

    /// A multipart/form-data call: `form`'s fields, and a file (setWebhook's certificate).
    func call(_ method: String, form: [(String, String)], file: (field: String, name: String, bytes: [UInt8])) throws -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        let boundary = "gatewayctl-" + String(UInt64.random(in: 0...UInt64.max, using: &generator), radix: 16)
        var body: [UInt8] = []
        for (name, value) in form {
            body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8)
        }
        body += Array(
            "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(file.field)\"; filename=\"\(file.name)\"\r\nContent-Type: application/x-pem-file\r\n\r\n"
                .utf8)
        body += file.bytes
        body += Array("\r\n--\(boundary)--\r\n".utf8)
        return try send(method, contentType: "multipart/form-data; boundary=\(boundary)", body: body)
    }

    private func send(_ method: String, contentType: String, body: [UInt8]) throws -> [UInt8] {
        let client = try HTTPClient()
        let response: HTTPResponse
        do {
            response = try client.send(
                HTTPRequest(
                    method: "POST", url: "\(config.telegramAPIBaseURL)/bot\(config.botToken.reveal())/\(method)",
                    headers: [("Content-Type", contentType)], body: body, timeoutSeconds: 15))
        } catch {
            throw fail(Failure(status: nil, description: error.shortDescription), method)
        }
        guard (200..<300).contains(response.status) else {
            throw fail(Failure(status: response.status, description: "\(response.status): \(BotAPIResponse.description(of: response.body))"), method)
        }
        return response.body
    }

    private func fail(_ failure: Failure, _ method: String) -> Error {
        if quiet { return failure }
        printError("gatewayctl: \(method) failed (\(failure.description))")
        return ExitCode(failureCode)
    }
}
