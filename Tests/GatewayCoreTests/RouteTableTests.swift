import Testing

@testable import GatewayCore

@Suite struct RouteTableTests {
    let table = RouteTable.standard
    let ada = User(id: 42, firstName: "Ada")
    let chat = Chat(id: 42, type: "private")

    private func message(_ text: String?, from user: User? = nil, type: UpdateType = .message) -> Update {
        Update(id: 1, type: type, content: .message(Message(messageID: 1, from: user ?? ada, chat: chat, text: text)))
    }

    private func callback(_ data: String?) -> Update {
        Update(
            id: 1, type: .callbackQuery,
            content: .callbackQuery(
                CallbackQuery(id: "cb", from: ada, message: CallbackMessage(messageID: 2, chat: chat), data: data)))
    }

    @Test(arguments: ["start", "help", "profile"])
    func seedCommandsGoToTheUserProfileService(name: String) {
        let route = table.route(message("/\(name)"))
        #expect(route == .command(BotCommand(name: name), .service(.userProfile)))
        #expect(route.label == "user_profile")
    }

    @Test(arguments: ["CONNECT", "ACCEPT", "REJECT", "SKIP"])
    func matchingCallbacksGoToTheMatchingService(prefix: String) {
        #expect(table.route(callback("\(prefix):123")) == .callback(prefix: prefix, .service(.matching)))
        #expect(table.route(callback(prefix)) == .callback(prefix: prefix, .service(.matching)))
    }

    @Test(arguments: ["CONFIRM", "CANCEL"])
    func confirmAndCancelGoToTheGenericHandler(prefix: String) {
        #expect(table.route(callback("\(prefix):order-9")) == .callback(prefix: prefix, .generic))
    }

    @Test func plainTextGoesToTheConversationService() {
        #expect(table.route(message("hello")) == .text(.service(.conversation)))
    }

    @Test func unknownCommandAndCallbackAreRecognised() {
        #expect(table.route(message("/nope x")) == .unknownCommand(BotCommand(name: "nope", arguments: "x")))
        #expect(table.route(callback("connect:1")) == .unknownCallback, "prefixes are case-sensitive")
        #expect(table.route(callback("WHATEVER")) == .unknownCallback)
        #expect(table.route(callback(nil)) == .unknownCallback)
    }

    @Test func groupCommandsForAnotherBotAreIgnored() {
        #expect(table.route(message("/start@other_bot"), botUsername: "our_bot") == .ignored(.otherBot))
        #expect(
            table.route(message("/start@Our_Bot"), botUsername: "our_bot")
                == .command(
                    BotCommand(name: "start", mention: "Our_Bot"), .service(.userProfile)))
    }

    @Test func updatesWithNothingToRouteAreIgnored() {
        #expect(table.route(message(nil)) == .ignored(.noText))
        #expect(table.route(message("hi", from: User(id: 9, isBot: true, firstName: "B"))) == .ignored(.fromBot))
        #expect(table.route(message("hi", type: .editedMessage)) == .ignored(.unroutedType))
        #expect(table.route(message("hi", type: .channelPost)) == .ignored(.unroutedType))
        #expect(table.route(Update(id: 1, type: .poll, content: .other(user: nil, chat: nil))) == .ignored(.unroutedType))
    }

    @Test func aTableIsDataThatCanBeExtended() {
        var custom = table
        custom.commands["orders"] = .service(ServiceName("orders"))
        custom.text = nil
        #expect(custom.route(message("/orders")) == .command(BotCommand(name: "orders"), .service(ServiceName("orders"))))
        #expect(custom.route(message("hello")) == .ignored(.unroutedType))
    }
}
