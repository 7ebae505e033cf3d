import Logging
import Testing

@testable import GatewayCore

@Suite struct GatewayConfigTests {
    let token = "123456:TEST-token_for_unit_tests_only_0000"
    var minimal: [String: String] { ["TELEGRAM_BOT_TOKEN": token, "TELEGRAM_WEBHOOK_SECRET": "s3cret-value"] }

    @Test func clusterSeedsAreParsedAndExclusiveWithASingleServer() throws {
        var environment = minimal
        environment["REDIS_CLUSTER_NODES"] = "10.0.0.1:7000, 10.0.0.2:7001,[::1]:7002"
        let config = try GatewayConfig.load(environment: environment)
        #expect(config.redis.clusterNodes.map(\.description) == ["10.0.0.1:7000", "10.0.0.2:7001", "[::1]:7002"])
        #expect(try GatewayConfig.load(environment: minimal).redis.clusterNodes.isEmpty)

        environment["REDIS_HOST"] = "10.0.0.9"
        environment["REDIS_DB"] = "2"
        let error = try #require(throws: ConfigError.self) { try GatewayConfig.load(environment: environment) }
        #expect(error.problems.map(\.variable).sorted() == ["REDIS_DB", "REDIS_HOST"])
        for bad in ["10.0.0.1", "10.0.0.1:0", "a:b", ",", "host:7000/x"] {
            var wrong = minimal
            wrong["REDIS_CLUSTER_NODES"] = bad
            #expect(throws: ConfigError.self, "\(bad)") { try GatewayConfig.load(environment: wrong) }
        }
    }

    @Test func defaultsMatchTheSeed() throws {
        let config = try GatewayConfig.load(environment: minimal)
        #expect(config.redis.host == "127.0.0.1")
        #expect(config.redis.port == 6379)
        #expect(config.redis.socket == nil)
        #expect(config.redis.password == nil)
        #expect(config.redis.commandTimeoutSeconds == 0.05)
        #expect(config.dedupeTTLSeconds == 86_400)
        // The lease outlives the slowest service (5 s) plus delivery.
        #expect(config.updateDeadlineSeconds == 25)
        #expect(config.statePolicy.leaseMilliseconds == 30_000, "the deadline and a margin")
        #expect(config.sessionTTLSeconds == 86_400)
        #expect(config.rateLimit == .init(requests: 1, windowSeconds: 1))
        #expect(config.services[.conversation]?.timeoutSeconds == 5)
        #expect(config.services[.matching]?.timeoutSeconds == 3)
        #expect(config.services[.userProfile]?.timeoutSeconds == 3)
        #expect(config.services[.notification]?.timeoutSeconds == 3)
        #expect(config.logLevel == .info)
        #expect(config.logFormat == .json)
        #expect(config.webhookSecrets == [Secret("s3cret-value")])
        #expect(config.botToken.reveal() == token)
    }

    @Test func valuesAreTyped() throws {
        var environment = minimal
        environment["REDIS_PORT"] = "6380"
        environment["RATE_LIMIT_WINDOW"] = "2.5"
        environment["LOG_LEVEL"] = "debug"
        environment["LOG_FORMAT"] = "text"
        environment["MATCHING_SERVICE_URL"] = "https://matching.internal:8443/api"
        environment["TELEGRAM_WEBHOOK_SECRET_PREVIOUS"] = "old-secret"
        environment["GATEWAY_THREADS"] = "16"
        environment["REDIS_SOCKET"] = "/run/redis/redis.sock"
        environment["REDIS_PASSWORD"] = "pa ss"
        let config = try GatewayConfig.load(environment: environment)
        #expect(config.redis.port == 6380)
        #expect(config.rateLimit.windowSeconds == 2.5)
        #expect(config.logLevel == .debug)
        #expect(config.logFormat == .text)
        #expect(config.services[.matching]?.url == "https://matching.internal:8443/api")
        #expect(config.webhookSecrets == [Secret("s3cret-value"), Secret("old-secret")])
        #expect(config.pool.threads == 16)
        #expect(config.redis.socket == "/run/redis/redis.sock")
        #expect(config.redis.password?.reveal() == "pa ss")
        #expect(config.statePolicy.rateLimitWindowMilliseconds == 2500)
    }

    @Test func theDeadlineBoundsEveryServiceAndStaysBelowNginxAndTelegram() throws {
        var environment = minimal
        environment["UPDATE_DEADLINE"] = "10"
        environment["CONVERSATION_TIMEOUT"] = "12"
        environment["REQUEST_TIMEOUT"] = "8"
        let error = try #require(throws: ConfigError.self) { try GatewayConfig.load(environment: environment) }
        #expect(Set(error.problems.map(\.variable)) == ["CONVERSATION_TIMEOUT", "REQUEST_TIMEOUT"])
        #expect(error.description.contains("longer than UPDATE_DEADLINE"))
        environment["UPDATE_DEADLINE"] = "51"
        #expect(throws: ConfigError.self) { try GatewayConfig.load(environment: environment) }
        #expect(GatewayConfig.maxUpdateDeadlineSeconds < GatewayConfig.nginxReadTimeoutSeconds)
        #expect(GatewayConfig.nginxReadTimeoutSeconds < GatewayConfig.telegramWaitSeconds)
        environment["UPDATE_DEADLINE"] = "15"
        environment["REQUEST_TIMEOUT"] = "20"
        let config = try GatewayConfig.load(environment: environment)
        #expect(config.statePolicy.leaseMilliseconds == 20_000)
        // A routes file's slower service is checked too.
        var services = config.services
        services[ServiceName("orders")] = .init(url: "http://127.0.0.1:1", timeoutSeconds: 30)
        #expect(throws: ConfigError.self) { try config.check(services: services) }
    }

    @Test func everyProblemIsReportedAtOnceNamingTheVariable() throws {
        let environment = [
            "TELEGRAM_WEBHOOK_SECRET": "has spaces!", "REDIS_PORT": "70000", "SESSION_TTL": "soon",
            "RATE_LIMIT_REQUESTS": "0", "CONVERSATION_SERVICE_URL": "ftp://x", "LOG_LEVEL": "LOUD",
            "CONVERSATION_TIMEOUT": "-1",
        ]
        let error = try #require(throws: ConfigError.self) { try GatewayConfig.load(environment: environment) }
        #expect(
            Set(error.problems.map(\.variable)) == [
                "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "REDIS_PORT", "SESSION_TTL", "RATE_LIMIT_REQUESTS",
                "CONVERSATION_SERVICE_URL", "LOG_LEVEL", "CONVERSATION_TIMEOUT",
            ])
        #expect(error.description.contains("REDIS_PORT: got '70000', expected a whole number from 1 to 65535"))
    }

    @Test func secretsAreNeverQuotedBack() throws {
        let badToken = "not-a-token-SECRETVALUE"
        let badSecret = "bad secret SECRETVALUE"
        let error = try #require(throws: ConfigError.self) {
            try GatewayConfig.load(environment: ["TELEGRAM_BOT_TOKEN": badToken, "TELEGRAM_WEBHOOK_SECRET": badSecret])
        }
        #expect(error.problems.count == 2)
        #expect(!error.description.contains("SECRETVALUE"))
    }

    @Test func secretPrintsAsStars() {
        let secret = Secret("top-secret")
        #expect("\(secret)" == "***")
        #expect(String(reflecting: secret) == "***")
        #expect(!"\([secret])".contains("top-secret"))
        var dumped = ""
        dump(secret, to: &dumped)
        #expect(!dumped.contains("top-secret"))
    }

    @Test func secretComparisonIsExact() {
        let secret = Secret("abc")
        #expect(secret.matches(Array("abc".utf8)))
        for candidate in ["", "ab", "abcd", "abd", "ABC", "abcabc"] {
            #expect(!secret.matches(Array(candidate.utf8)), "\(candidate)")
        }
        #expect(!Secret("").matches([]))
    }

    @Test func environmentWinsOverDotEnv() {
        let merged = GatewayConfig.merge(environment: ["A": "env"], dotEnv: ["A": "file", "B": "file"])
        #expect(merged == ["A": "env", "B": "file"])
    }

    @Test func nginxSecretMapHasOneAnchoredCaseSensitiveLinePerSecret() {
        #expect(NginxSecretMap.render([Secret("new-1"), Secret("old_2")]) == "\"~^new-1$\" 1;\n\"~^old_2$\" 1;\n")
    }
}

@Suite struct DotEnvTests {
    @Test func aFileSavedWithWindowsOrOldMacLineEndsIsReadLineByLine() throws {
        // Swift reads "\r\n" as one character: split at "\n", this was one line and A's value
        // swallowed the rest of the file.
        for end in ["\r\n", "\r", "\n"] {
            let values = try DotEnv.parse(["A=1", "B=two words", "# note", "C='x'", ""].joined(separator: end))
            #expect(values == ["A": "1", "B": "two words", "C": "x"], "line end \(Array(end.utf8))")
        }
    }

    @Test func parsesTheUsualForms() throws {
        let values = try DotEnv.parse(
            """
            # comment
            A=1
            export B = two words
            C="quoted # not a comment"
            D='single'
            E=value # trailing comment

            F=
            G=a=b
            """)
        #expect(values == ["A": "1", "B": "two words", "C": "quoted # not a comment", "D": "single", "E": "value", "F": "", "G": "a=b"])
    }

    @Test func badLinesAreReportedByLineNumber() throws {
        let error = try #require(throws: ConfigError.self) { try DotEnv.parse("A=1\nnonsense\nB=\"open\n=x") }
        #expect(error.problems.map(\.variable) == [".env:2", ".env:3", ".env:4"])
    }
}
