import Foundation
import GatewayCore
import Testing

/// gatewayctl against the Bot API and service stand-ins.
@Suite(.serialized) struct GatewayCtlTests {
    static var binary: String {
        ProcessInfo.processInfo.environment["GATEWAYCTL"] ?? LocalStack.packageRoot.appending(path: ".build/release/gatewayctl").path
    }

    private func ctl(_ stack: LocalStack, _ arguments: String...) throws -> (code: Int32, output: String) {
        try ctl(stack, arguments)
    }

    private func ctl(_ stack: LocalStack, _ arguments: [String]) throws -> (code: Int32, output: String) {
        let result = try ChildProcess.runCapturing(Self.binary, arguments + ["--env-file", stack.directory.appending(path: ".env").path])
        #expect(!result.output.contains(LocalStack.token), "gatewayctl printed the bot token")
        return result
    }

    @Test func setWebhookSendsTheSecretThePoolCapacityAndTheRoutedUpdateTypes() throws {
        try withStack(processes: 2, threads: 4, standins: true) { stack, _ in
            let result = try ctl(stack, "set-webhook", "--url", "https://bot.example.com/webhook/telegram")
            #expect(result.code == 0, "\(result.output)")
            let call = try #require(stack.botAPICalls().last)
            #expect(call.method == "setWebhook")
            #expect(call.params["url"] as? String == "https://bot.example.com/webhook/telegram")
            #expect(call.params["secret_token"] as? String == LocalStack.secret)
            #expect(call.params["max_connections"] as? Int == 8)
            #expect(call.params["allowed_updates"] as? [String] == ["message", "callback_query"])

            // The stand-in reports a 403 five minutes ago with 3 updates waiting: critical.
            let info = try ctl(stack, "webhook-info")
            #expect(info.code == 2, "\(info.output)")
            #expect(info.output.contains("Status: CRITICAL"))
            #expect(info.output.contains("Webhook: https://bot.example.com/webhook/telegram"))
            #expect(info.output.contains("Updates waiting at Telegram: 3"))
            #expect(info.output.contains("5 minutes ago: Wrong response from the webhook: 403 Forbidden"))
            #expect(info.output.contains("Meaning: nginx refused the secret"))

            #expect(try ctl(stack, "delete-webhook").code == 0)
            #expect(try ctl(stack, "webhook-info").output.contains("No webhook is set"))
        }
    }

    @Test func checkConfigReportsWhatIsUnreachable() throws {
        try withStack(standins: true) { stack, _ in
            // This stack has no Redis: its REDIS_PORT is a port where nothing listens.
            let result = try ctl(stack, "check-config")
            #expect(result.code != 0)
            #expect(result.output.contains("configuration: ok"))
            #expect(result.output.contains("redis: FAILED"))
            #expect(result.output.contains("service conversation: reachable"))
            #expect(result.output.contains("service matching: reachable"))
        }
        try withStack(redis: (password: nil, useSocket: false), standins: true) { stack, _ in
            let result = try ctl(stack, "check-config")
            #expect(result.code == 0, "\(result.output)")
            #expect(result.output.contains("redis: ok"))
        }
    }

    @Test func broadcastShowsProgressTalliesAndFailsWhenSomeRecipientsFailed() throws {
        try withStack(redis: (password: nil, useSocket: true), standins: true) { stack, _ in
            try stack.control(["bot_api_403_chats": [3_000_002]])
            let ids = stack.directory.appending(path: "ids.txt")
            try "# recipients\n3000001\n3000002\n\n3000003  # the last\n3000001\n".write(to: ids, atomically: false, encoding: .utf8)
            let result = try ctl(stack, "broadcast", "--ids-file", ids.path, "--text", "Maintenance tonight", "--timeout", "30")
            #expect(result.code == 1, "some recipients failed: \(result.output)")
            #expect(result.output.contains("(3 recipients)"))
            #expect(result.output.contains("3/3 done (2 delivered, 1 failed)"))
            #expect(result.output.contains("delivered: 2"))
            #expect(result.output.contains("failed: 1 (blocked 1)"))
            #expect(result.output.contains("pending: 0"))
            let sent = stack.botAPICalls().filter { $0.method.hasPrefix("sendMessage") }.compactMap { $0.params["chat_id"] as? Int }
            #expect(sent.sorted() == [3_000_001, 3_000_002, 3_000_003])

            let one = try ctl(stack, "send", "--chat", "3000004", "--text", "hello", "--idempotency-key", "once")
            #expect(one.code == 0, "\(one.output)")
            #expect(one.output.contains("delivered: 1"))
            let again = try ctl(stack, "send", "--chat", "3000004", "--text", "hello", "--idempotency-key", "once")
            #expect(again.output.contains("not sent again"))
            #expect(stack.botAPICalls().filter { ($0.params["chat_id"] as? Int) == 3_000_004 }.count == 1)

            try "3000005\nnot-an-id\n".write(to: ids, atomically: false, encoding: .utf8)
            let bad = try ctl(stack, "broadcast", "--ids-file", ids.path, "--text", "x")
            #expect(bad.code == 65)
            #expect(bad.output.contains("ids.txt:2: not a chat id"))
        }
    }

    @Test func anUnreachableBotAPIIsReportedWithoutTheToken() throws {
        try withStack(environment: ["TELEGRAM_API_BASE_URL": "http://127.0.0.1:\(try LocalStack.freePort())"]) { stack, _ in
            let result = try ctl(stack, "webhook-info")
            #expect(result.code == 3, "unknown, for monitoring: \(result.output)")
            #expect(result.output.contains("getWebhookInfo failed (connect_failed)"))
            let file = stack.directory.appending(path: "webhook.prom")
            #expect(try ctl(stack, "webhook-info", "--prometheus", file.path).code == 3)
            #expect(try String(contentsOf: file, encoding: .utf8).contains("\ntelegram_gateway_webhook_status 3\n"))
        }
    }

    @Test func checkConfigAsksTelegramWhoTheBotIsAndOfflineReachesNothing() throws {
        try withStack(redis: (password: nil, useSocket: false), standins: true) { stack, _ in
            let result = try ctl(stack, "check-config")
            #expect(result.code == 0, "\(result.output)")
            let id = LocalStack.token.prefix { $0 != ":" }
            #expect(result.output.contains("bot: ok (@standin_bot, id \(id))"))

            try stack.control(["unauthorized": true])
            let revoked = try ctl(stack, "check-config")
            #expect(revoked.code == 1, "\(revoked.output)")
            #expect(revoked.output.contains("bot: FAILED (getMe: 401: Unauthorized); TELEGRAM_BOT_TOKEN is wrong or revoked"))
            #expect(revoked.output.contains("redis: ok"), "the other checks still run")

            let calls = stack.botAPICalls().count
            let offline = try ctl(stack, "check-config", "--offline")
            #expect(offline.code == 0 && offline.output == "configuration: ok\n", "\(offline.output)")
            #expect(stack.botAPICalls().count == calls, "--offline asks Telegram nothing")
        }
        let wrongBot = ["TELEGRAM_BOT_USERNAME": "another_bot"]
        try withStack(redis: (password: nil, useSocket: false), standins: true, environment: wrongBot) { stack, _ in
            let result = try ctl(stack, "check-config")
            #expect(result.code == 1)
            #expect(result.output.contains("TELEGRAM_BOT_USERNAME is another_bot, but the token belongs to @standin_bot"))
        }
    }

    @Test func setWebhookUploadsASelfSignedCertificateAsMultipartWithTheIPAddress() throws {
        let url = "https://203.0.113.7:8443/webhook/telegram"
        try withStack(standins: true, environment: ["WEBHOOK_URL": url]) { stack, _ in
            let certificate = stack.directory.appending(path: "tls/cert.pem").path
            let result = try ctl(stack, "set-webhook", "--certificate", certificate, "--ip-address", "203.0.113.7")
            #expect(result.code == 0, "\(result.output)")
            #expect(result.output.contains("certificate uploaded"))
            let call = try #require(stack.botAPICalls().last)
            #expect(call.method == "setWebhook")
            // Sent as multipart/form-data: every field a string, the certificate a file.
            #expect(call.params["url"] as? String == url, "the URL defaults to WEBHOOK_URL")
            #expect(call.params["secret_token"] as? String == LocalStack.secret)
            #expect(call.params["ip_address"] as? String == "203.0.113.7")
            #expect(call.params["max_connections"] as? String == "8")
            #expect(call.params["allowed_updates"] as? String == #"["message","callback_query"]"#)
            let file = try #require(call.params["certificate"] as? [String: Any])
            #expect(file["pem_certificate"] as? Bool == true)
            let size = try FileManager.default.attributesOfItem(atPath: certificate)[.size] as? Int
            #expect(file["size"] as? Int == size)

            try stack.control(["webhook_pending": 0, "webhook_error": NSNull()])
            let info = try ctl(stack, "webhook-info", "--json")
            #expect(info.code == 0, "\(info.output)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(info.output.utf8)) as? [String: Any])
            #expect(json["status"] as? String == "ok")
            #expect(json["url_matches"] as? Bool == true)
            #expect(json["has_custom_certificate"] as? Bool == true)
            #expect(json["ip_address"] as? String == "203.0.113.7")
            #expect(json["allowed_updates"] as? [String] == ["message", "callback_query"])

            // The private key is never uploaded; nothing is sent.
            let calls = stack.botAPICalls().count
            let key = try ctl(stack, "set-webhook", "--certificate", stack.directory.appending(path: "tls/key.pem").path)
            #expect(key.code == 65 && key.output.contains("never the key"), "\(key.output)")
            #expect(try ctl(stack, "set-webhook", "--url", "https://bot.example.com:9443/webhook/telegram").code == 64)
            #expect(stack.botAPICalls().count == calls)
        }
    }

    @Test func webhookInfoExitCodesTellMonitoringOkWarningOrCritical() throws {
        let url = "https://bot.example.com/webhook/telegram"
        try withStack(standins: true, environment: ["WEBHOOK_URL": url]) { stack, _ in
            #expect(try ctl(stack, "set-webhook").code == 0)
            func check(_ report: [String: Any], _ arguments: String...) throws -> (code: Int32, json: [String: Any]) {
                try stack.control(report)
                let result = try ctl(stack, ["webhook-info", "--json"] + arguments)
                let json = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]) ?? [:]
                #expect(json["status"] != nil, "\(result.output)")
                return (result.code, json)
            }
            #expect(try check(["webhook_pending": 0, "webhook_error": NSNull()]).code == 0)
            let recent = try check([
                "webhook_pending": 0, "webhook_error": "Wrong response from the webhook: 502 Bad Gateway", "webhook_error_age": 60,
            ])
            #expect(recent.code == 1 && recent.json["status"] as? String == "warning")
            #expect((recent.json["advice"] as? String)?.contains("could not reach the responder pool") == true)
            #expect(try check(["webhook_pending": 5]).code == 2, "a recent error while updates wait")
            #expect(try check(["webhook_pending": 5, "webhook_error_age": 3600]).code == 0, "an old error, a few updates in flight")
            #expect(try check(["webhook_pending": 150]).code == 1)
            #expect(try check(["webhook_pending": 150], "--warn-pending", "200").code == 0)
            #expect(try check(["webhook_pending": 1500]).code == 2)

            // Telegram posts somewhere else than WEBHOOK_URL: critical, whatever else.
            #expect(try ctl(stack, "set-webhook", "--url", "https://old.example.com/webhook/telegram").code == 0)
            let elsewhere = try check(["webhook_pending": 0, "webhook_error": NSNull()])
            #expect(elsewhere.code == 2 && elsewhere.json["url_matches"] as? Bool == false)
            #expect((elsewhere.json["reasons"] as? [String])?.first?.contains("not to WEBHOOK_URL") == true)
            let plain = try ctl(stack, "webhook-info")
            #expect(plain.output.contains("This is not WEBHOOK_URL (\(url))"))

            // The same state for node_exporter's textfile collector, in a form promtool accepts.
            let file = stack.directory.appending(path: "webhook.prom")
            #expect(try ctl(stack, "webhook-info", "--prometheus", file.path).code == 2)
            let exposition = try String(contentsOf: file, encoding: .utf8)
            #expect(exposition.contains("\ntelegram_gateway_webhook_url_matches 0\n"))
            #expect(exposition.contains("\ntelegram_gateway_webhook_status 2\n"))
            let promtool = try MetricsExpositionTests.promtool(exposition, in: stack.directory)
            #expect(promtool.code == 0 && promtool.output.isEmpty, "\(promtool.output)")

            #expect(try ctl(stack, "delete-webhook").code == 0)
            #expect(try check([:]).code == 2, "no webhook at all")
        }
    }

    @Test func setCommandsSendsTheDescribedRoutesAsTheMenu() throws {
        let routes = FileManager.default.temporaryDirectory.appending(path: "routes-\(UUID().uuidString.prefix(6)).conf")
        try """
        command orders conversation
        describe orders Your recent orders
        command secret conversation
        describe /help  Everything the bot can do
        """.write(to: routes, atomically: false, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: routes) }
        try withStack(standins: true, environment: ["ROUTES_FILE": routes.path]) { stack, _ in
            let dry = try ctl(stack, "set-commands", "--dry-run")
            #expect(dry.code == 0, "\(dry.output)")
            #expect(!stack.botAPICalls().contains { $0.method == "setMyCommands" }, "a dry run sends nothing")

            let result = try ctl(stack, "set-commands", "--language-code", "en")
            #expect(result.code == 0, "\(result.output)")
            #expect(result.output.contains("Command menu set: /help, /orders, /profile, /start"))
            #expect(result.output.contains("Routed but not listed (no description): /secret"))
            let call = try #require(stack.botAPICalls().last)
            #expect(call.method == "setMyCommands")
            #expect(call.params["language_code"] as? String == "en")
            let commands = try #require(call.params["commands"] as? [[String: String]])
            #expect(commands.map { $0["command"] ?? "" } == ["help", "orders", "profile", "start"])
            #expect(commands[0]["description"] == "Everything the bot can do")
            #expect(commands[1]["description"] == "Your recent orders")
        }
    }

    @Test func everyShippedExecutableTellsItsVersion() throws {
        for binary in [Self.binary, LocalStack.binary] {
            let result = try ChildProcess.runCapturing(binary, ["--version"])
            #expect(result.code == 0 && result.output == GatewayVersion.current + "\n", "\(binary): \(result.output)")
        }
    }

    @Test func badConfigurationStopsWithEveryProblemNamed() throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "ctl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let env = directory.appending(path: ".env")
        try "TELEGRAM_WEBHOOK_SECRET=bad secret\nREDIS_PORT=0\n".write(to: env, atomically: false, encoding: .utf8)
        let result = try ChildProcess.runCapturing(Self.binary, ["check-config", "--env-file", env.path])
        #expect(result.code == 78)
        #expect(result.output.contains("TELEGRAM_BOT_TOKEN: is required"))
        #expect(result.output.contains("TELEGRAM_WEBHOOK_SECRET: has the wrong form (value not shown)"))
        #expect(result.output.contains("REDIS_PORT: got '0'"))
    }
}

/// gatewayctl's replays against a real Redis with no pool: a replay is new work like any
/// other, so a full partition takes none.
@Suite(.serialized) struct DeadLetterReplayTests {
    @Test func replayAllStopsAtTheBacklogBoundAndReplaysTheRestOnceThePartitionDrains() throws {
        let redis = try RedisServer()
        defer { try? redis.stop() }
        let env = redis.directory.appending(path: "gatewayctl.env")
        let settings = redis.gatewayEnvironment(useSocket: true).merging([
            "TELEGRAM_BOT_TOKEN": LocalStack.token, "TELEGRAM_WEBHOOK_SECRET": LocalStack.secret, "QUEUE_PARTITIONS": "1",
            "QUEUE_WORKERS": "1", "QUEUE_MAX_BACKLOG": "2", "GATEWAY_PROCESSES": "1",
        ]) { _, new in new }
        try settings.map { "\($0.key)=\($0.value)\n" }.sorted().joined().write(to: env, atomically: false, encoding: .utf8)
        func ctl(_ arguments: String...) throws -> (code: Int32, output: String) {
            try ChildProcess.runCapturing(GatewayCtlTests.binary, arguments + ["--env-file", env.path])
        }
        for id in 1...3 {
            try redis.cli(
                "XADD", "{tgq:0}:dead", "*", "u", String(decoding: textUpdate(id: id, user: 1, text: "t"), as: UTF8.self), "reason", "service_failed",
                "attempts", "2", "entry", "1-\(id)")
        }
        for _ in 1...2 { try redis.cli("XADD", "{tgq:0}:stream", "*", "u", "{}") }

        let full = try ctl("dead-letters", "--replay-all")
        #expect(full.code != 0, "a replay left for later is not success")
        #expect(full.output.contains("at QUEUE_MAX_BACKLOG"), "\(full.output)")
        #expect(try redis.cli("XLEN", "{tgq:0}:stream") == "2", "nothing was added past the bound")
        #expect(try redis.cli("XLEN", "{tgq:0}:dead") == "3")

        try redis.cli("XTRIM", "{tgq:0}:stream", "MAXLEN", "0")
        let partly = try ctl("dead-letters", "--replay-all")
        #expect(partly.code != 0)
        #expect(partly.output.components(separatedBy: "replayed 0/").count - 1 == 2, "\(partly.output)")
        #expect(try redis.cli("XLEN", "{tgq:0}:dead") == "1")

        try redis.cli("XTRIM", "{tgq:0}:stream", "MAXLEN", "0")
        let rest = try ctl("dead-letters", "--replay-all")
        #expect(rest.code == 0, "\(rest.output)")
        #expect(try redis.cli("XLEN", "{tgq:0}:dead") == "0")
        let fields = try redis.cli("XRANGE", "{tgq:0}:stream", "-", "+")
        #expect(fields.contains("replay"), "a replayed update carries its replay's id")
    }
}
