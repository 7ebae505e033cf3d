import GatewayTestSupport
import Testing

@testable import GatewayCore

@Suite struct BotCommandTests {
    @Test(arguments: [
        ("/start", BotCommand(name: "start")),
        ("/start payload", BotCommand(name: "start", arguments: "payload")),
        ("/start  two words ", BotCommand(name: "start", arguments: "two words ")),
        ("/start\nnext line", BotCommand(name: "start", arguments: "next line")),
        ("/help@SomeBot", BotCommand(name: "help", mention: "SomeBot")),
        ("/help@SomeBot please", BotCommand(name: "help", mention: "SomeBot", arguments: "please")),
        ("/Profile", BotCommand(name: "profile")),
        ("/a_1", BotCommand(name: "a_1")),
        ("/" + String(repeating: "x", count: 32), BotCommand(name: String(repeating: "x", count: 32))),
        ("/start привет", BotCommand(name: "start", arguments: "привет")),
    ])
    func parsesCommandsAsTelegramDefinesThem(text: String, expected: BotCommand) {
        #expect(BotCommand(text: text) == expected)
    }

    @Test(arguments: [
        "start", "", "/", "/ start", "/start-now", "/start@", "/start@bot!", "/привет",
        "/" + String(repeating: "x", count: 33), " /start", "//start", "/start/",
    ])
    func otherTextIsNoCommand(text: String) {
        #expect(BotCommand(text: text) == nil)
    }

    /// The byte parser against the scalar parser it replaced, on every kind of text around a
    /// command: Unicode whitespace (ending it or not), combining marks, emoji, long names.
    @Test(arguments: [
        "/start", "/START payload", "/start\u{00A0}nbsp", "/start\u{2028}line", "/start\u{3000}wide", "/start\u{0085}next",
        "/start\u{200B}zero-width", "/start\u{0301}", "/start🙂", "/start 🙂", "/help@Bot\u{2003}x", "/help@Bot\u{0301}",
        "/help@", "/x@y@z", "/a\t\n\u{0B}\u{0C}\r b", "/" + String(repeating: "Z", count: 32) + " x",
        "/" + String(repeating: "Z", count: 33), "/é", "/_", "/9 ", "\u{FEFF}/start", "/start\u{0000}", "/start \u{0000}",
    ])
    func parsesAsTheScalarParserItReplaced(text: String) {
        #expect(BotCommand(text: text) == ReferenceBotCommand.parse(text))
        let code = [MessageEntity(type: "code", offset: 0, length: 2)]
        #expect(BotCommand(text: text, entities: code) == ReferenceBotCommand.parse(text, entities: code))
    }

    @Test func aSlashShownAsCodeIsNoCommand() {
        #expect(BotCommand(text: "/start", entities: [MessageEntity(type: "code", offset: 0, length: 6)]) == nil)
        #expect(BotCommand(text: "/start", entities: [MessageEntity(type: "bot_command", offset: 0, length: 6)]) != nil)
        // An entity elsewhere in the text does not matter.
        #expect(BotCommand(text: "/start x", entities: [MessageEntity(type: "bold", offset: 7, length: 1)]) != nil)
    }

    @Test func mentionDecidesWhichBotACommandIsFor() throws {
        let command = try #require(BotCommand(text: "/help@Some_Bot"))
        #expect(command.isAddressed(to: "some_bot"))
        #expect(!command.isAddressed(to: "other_bot"))
        #expect(command.isAddressed(to: nil))
        #expect(try #require(BotCommand(text: "/help")).isAddressed(to: "other_bot"))
    }
}
