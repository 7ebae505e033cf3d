import Testing

@testable import GatewayCore

@Suite struct RouteFileTests {
    let services: [ServiceName: GatewayConfig.ServiceSettings] = [
        .conversation: .init(url: "http://c", timeoutSeconds: 5), .userProfile: .init(url: "http://u", timeoutSeconds: 3),
        .matching: .init(url: "http://m", timeoutSeconds: 3), .notification: .init(url: "http://n", timeoutSeconds: 3),
    ]

    @Test func rulesAddServicesCommandsAndCallbacks() throws {
        let (table, all) = try RouteFile.apply(
            """
            # orders live elsewhere
            service  orders   https://orders.internal/telegram  timeout=2.5
            command  /orders  orders
            command  help     conversation   # help moves
            callback BUY      orders
            callback SKIP     generic
            text     none
            """, to: .standard, services: services)
        #expect(all[ServiceName("orders")] == .init(url: "https://orders.internal/telegram", timeoutSeconds: 2.5))
        #expect(table.commands["orders"] == .service(ServiceName("orders")))
        #expect(table.commands["help"] == .service(.conversation))
        #expect(table.commands["start"] == .service(.userProfile), "untouched defaults stay")
        #expect(table.callbackPrefixes["BUY"] == .service(ServiceName("orders")))
        #expect(table.callbackPrefixes["SKIP"] == .generic)
        #expect(table.text == nil)
    }

    @Test func describeLinesGiveTheCommandMenuItsTexts() throws {
        let (table, _) = try RouteFile.apply(
            """
            command orders conversation
            describe /orders   Your recent orders, newest first
            describe HELP\tWhat I can do\r
            command hidden conversation
            """, to: .standard, services: services)
        #expect(table.descriptions["orders"] == "Your recent orders, newest first")
        #expect(table.descriptions["help"] == "What I can do")
        #expect(table.menu.map(\.command) == ["help", "orders", "profile", "start"], "hidden has no description")
        let error = try #require(throws: ConfigError.self) {
            try RouteFile.apply("describe nosuch Something\ndescribe help\n", to: .standard, services: services)
        }
        #expect(error.problems.map(\.variable) == ["ROUTES_FILE:2", "ROUTES_FILE:1"])
        #expect(error.problems.last?.message.contains("'nosuch' is described but no command line or default routes it") == true)
    }

    @Test func everyBadLineIsReportedWithItsNumber() throws {
        let error = try #require(throws: ConfigError.self) {
            try RouteFile.apply(
                """
                command orders orders
                service Orders http://x
                service x ftp://x
                callback A:B matching
                command bad-name matching
                frobnicate
                service y http://y timeout=99
                text
                """, to: .standard, services: services)
        }
        #expect(error.problems.map(\.variable) == (1...8).map { "ROUTES_FILE:\($0)" })
        #expect(error.problems[0].message.contains("unknown service 'orders'"))
    }
}
