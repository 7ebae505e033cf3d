import GatewayTestSupport
import Testing

@testable import GatewayCore

@Suite struct UpdateDecoderTests {
    let decoder = UpdateDecoder()

    private func decode(_ body: String) throws -> Update {
        try decoder.decode(body.bytes).get()
    }

    @Test func messageDecodesWithUserChatAndText() throws {
        let update = try decode(Fixtures.message(text: "hi there"))
        #expect(update.id == 1001)
        #expect(update.type == .message)
        #expect(update.user == User(id: 42, firstName: "Ada", lastName: "L", username: "ada", languageCode: "en"))
        #expect(update.chat == Chat(id: 42, type: "private"))
        guard case .message(let message) = update.content else {
            Issue.record("not a message")
            return
        }
        #expect(message.text == "hi there")
        #expect(message.messageID == 7)
    }

    @Test func commandMessageKeepsItsEntities() throws {
        let update = try decode(Fixtures.command)
        guard case .message(let message) = update.content else {
            Issue.record("not a message")
            return
        }
        #expect(message.entities == [MessageEntity(type: "bot_command", offset: 0, length: 6)])
        #expect(message.command == BotCommand(name: "start", arguments: "ref_abc"))
    }

    @Test func editedMessageAndChannelPostAreMessages() throws {
        let edited = try decode(Fixtures.editedMessage)
        #expect(edited.type == .editedMessage)
        #expect(edited.user?.id == 42)
        let post = try decode(Fixtures.channelPost)
        #expect(post.type == .channelPost)
        #expect(post.user == nil)
        #expect(post.chat == Chat(id: -1009, type: "channel"))
    }

    @Test func callbackQueryWithMessage() throws {
        let update = try decode(Fixtures.callbackWithMessage)
        guard case .callbackQuery(let query) = update.content else {
            Issue.record("not a callback")
            return
        }
        #expect(query.id == "4382bfdwdsb323b2d9")
        #expect(query.data == "CONNECT:99")
        #expect(query.message == CallbackMessage(messageID: 11, chat: Chat(id: 42, type: "private")))
        #expect(update.user?.id == 42)
        #expect(update.chat?.id == 42)
    }

    @Test func callbackQueryFromInlineMessageHasNoChat() throws {
        let update = try decode(Fixtures.callbackInline)
        guard case .callbackQuery(let query) = update.content else {
            Issue.record("not a callback")
            return
        }
        #expect(query.inlineMessageID == "AAAAAQ")
        #expect(query.message == nil)
        #expect(update.chat == nil)
    }

    @Test func callbackQueryOnInaccessibleMessage() throws {
        let update = try decode(Fixtures.callbackInaccessible)
        guard case .callbackQuery(let query) = update.content else {
            Issue.record("not a callback")
            return
        }
        #expect(query.message?.messageID == 3)
    }

    @Test(arguments: [
        (Fixtures.inlineQuery, UpdateType.inlineQuery, Int64?(42), Int64?.none),
        (Fixtures.myChatMember, .myChatMember, 42, -1_001_234_567_890),
        (Fixtures.chatMember, .chatMember, 42, -1_001_234_567_890),
        (Fixtures.poll, .poll, nil, nil),
        (Fixtures.messageReaction, .messageReaction, 42, -1_001_234_567_890),
    ])
    func otherTypesKeepTheirUserAndChat(body: String, type: UpdateType, userID: Int64?, chatID: Int64?) throws {
        let update = try decode(body)
        #expect(update.type == type)
        #expect(update.type.isKnown)
        #expect(update.user?.id == userID)
        #expect(update.chat?.id == chatID)
    }

    @Test func businessMessageIsAMessage() throws {
        let update = try decode(Fixtures.businessMessage)
        #expect(update.type == .businessMessage)
        guard case .message(let message) = update.content else {
            Issue.record("not a message")
            return
        }
        #expect(message.text == "hi business")
    }

    @Test func unknownTypeIsToleratedAndLoggedAsUnknown() throws {
        let update = try decode(Fixtures.unknownType)
        #expect(update.type.rawValue == "future_thing")
        #expect(!update.type.isKnown)
        #expect(update.type.description == "unknown")
        #expect(update.user?.id == 42)
    }

    @Test func updateWithOnlyAnIDDecodes() throws {
        let update = try decode(#"{"update_id":5}"#)
        #expect(update.id == 5)
        #expect(update.content == .other(user: nil, chat: nil))
    }

    @Test(arguments: [
        ("", UpdateDecodingError.emptyBody),
        ("{", .invalidJSON),
        ("not json", .invalidJSON),
        ("[1,2]", .notAnObject),
        ("\"text\"", .notAnObject),
        (#"{"message":{}}"#, .missingUpdateID),
        (#"{"update_id":"7"}"#, .missingUpdateID),
        // Foundation reports a fraction where an integer belongs as corrupt data, not a type mismatch.
        (#"{"update_id":1.5}"#, .invalidJSON),
        (#"{"update_id":null}"#, .missingUpdateID),
        (#"{"update_id":7,"message":{"message_id":1}}"#, .invalidPayload),
        (#"{"update_id":7,"callback_query":{"id":"1"}}"#, .invalidPayload),
        (#"{"update_id":7,"message":"oops"}"#, .invalidPayload),
    ])
    func badBodiesBecomeTypedErrors(body: String, expected: UpdateDecodingError) {
        #expect(decoder.decode(body.bytes) == .failure(expected))
    }

    /// Bodies where JSON's corners meet: the byte decoder must answer what Foundation's
    /// JSONDecoder answered before it (the same update, or the same error class).
    @Test(arguments: [
        #"{"update_id":1e2}"#, #"{"update_id":1.0}"#, #"{"update_id":-0.0}"#, #"{"update_id":10e-1}"#, #"{"update_id":1.5}"#,
        #"{"update_id":9223372036854775807}"#, #"{"update_id":9223372036854775808}"#, #"{"update_id":-9223372036854775808}"#,
        #"{"update_id":9223372036854775807.0}"#, #"{"update_id":1e30}"#, #"{"update_id":01}"#, #"{"update_id":-}"#, #"{"update_id":1.}"#,
        #"{"update_id":22222222222222202.11001}"#, #"{"update_id":22222222222222202.0}"#, #"{"update_id":12345678901234567.5e1}"#,
        #"{"update_id":9007199254740993.9}"#, #"{"update_id":-9007199254740993.9}"#, #"{"update_id":9007199254740993.99999}"#,
        #"{"update_id":9007199254740993.0000000000000000000000000000}"#, #"{"update_id":90071992547409930e-1}"#,
        #"{"update_id":-9223372036854775808.0}"#, #"{"update_id":9223372036854775295.0}"#, #"{"update_id":9223372036854775296.0}"#,
        #"{"update_id":1.000000000000000001}"#, #"{"update_id":1e-400}"#, #"{"update_id":-1e-400}"#, #"{"update_id":25e-1}"#,
        #"{"update_id":90071992547409930000000e-7}"#, #"{"update_id":1e999}"#,
        #"{"update_id":11111111111111111.00000000000000000000000000000000000000001815943666}"#,
        #"{"update_id":11111111111111111111111111111111111111111e-24}"#,
        #"{"update_id":true}"#, #"{"update_id":1,"update_id":"x"}"#, #"{"update_id":"x","update_id":1}"#, #"{"update\u005fid":3}"#,
        #"{"update_id":1,}"#, #"{"update_id":1,,}"#, #"{,"update_id":1}"#, #"{"update_id":1} x"#, " {\"update_id\":1}\r\n\t",
        "\u{FEFF}{\"update_id\":1}", "{\"update_id\":1}\u{0C}", #"{"update_id":1,"poll":[1,2,]}"#, #"{"update_id":1,"poll":[,]}"#,
        #"{"update_id":1,"poll":{"a":--1,"b":1-2,"c":-e}}"#, #"{"update_id":1,"poll":{"a":0x10}}"#, #"{"update_id":1,"poll":"\q"}"#,
        #"{"update_id":1,"poll":"\u12"}"#, #"{"update_id":1,"poll":"\ud2zz"}"#, #"{"update_id":1,"poll":"\u12\"x"}"#,
        #"{"update_id":1,"poll":"\u12z\""}"#,
        #"{"update_id":1,"poll":"\u12zz\""}"#, #"{"update_id":1,"poll":"\u\u1234"}"#,
        #"{"update_id":1,"message":{"message_id":2,"chat":{"id":3,"type":"\u00G1"}}}"#, #"{"update_id":1,"poll":"\ud800"}"#,
        #"{"update_id":1,"poll":truex}"#,
        #"{"update_id":1,"message":{"message_id":2,"chat":{"id":3,"type":"private"},"text":"\ud83d\ude00 \u00e9\/\b"}}"#,
        #"{"update_id":1,"message":{"message_id":2,"chat":{"id":3,"type":"private"},"text":"\ud800"}}"#,
        #"{"update_id":1,"message":{"message_id":2,"chat":{"id":3,"type":"private"},"text":"\ud800\u0041"}}"#,
        #"{"update_id":1,"message":{"message_id":2,"chat":{"id":3,"type":"private"},"text":"\q"}}"#,
        #"{"update_id":1,"message":{"message_id":"2","chat":{"id":3,"type":"private"},"text":"\q"}}"#,
        #"{"update_id":1,"message":{"message_id":2,"chat":{"id":3,"type":"private"},"text":null,"entities":null,"from":null}}"#,
        #"{"update_id":1,"message":{"message_id":2,"chat":{"id":3,"type":"private"},"entities":[{"type":"bot_command","offset":0,"length":1},]}}"#,
        #"{"update_id":1,"message":{"message_id":2,"chat":{"id":3,"type":"private"},"entities":{}}}"#,
        #"{"update_id":1,"message":{"message_id":2,"chat":{"id":3,"type":"private"},"from":{"id":4,"is_bot":1}}}"#,
        #"{"update_id":1,"message":{"message_id":2,"chat":{"id":3,"type":"private"},"from":{"id":4,"first_name":null}}}"#,
        #"{"update_id":1,"message":{"message_id":2,"chat":{"id":3,"type":"private"},"\q":1}}"#,
        #"{"update_id":1,"message":{"message_id":2,"message_id":"x","chat":{"id":3,"type":"private"}}}"#,
        // Keys with escapes, several in one object, before and after plain ones.
        #"{"update_id":1,"m\u0065ssage":{"message\u005fid":2,"text":"t","ch\u0061t":{"id":3,"type":"private"},"fr\u00f6m":1}}"#,
        #"{"update_id":1,"message":{"message_id":2,"chat":{"id":3,"type":"private"},"from":{"\u0069d":4,"first\u005fname":"A","username":"u"}}}"#,
        #"{"update_id":1,"callback_query":{"id":"q","from":{"id":4},"message":{"chat":{"id":"5","type":"private"}}}}"#,
        #"{"update_id":1,"callback_query":{"id":"q","from":{"id":4},"data":1,"inline_message_id":"\q"}}"#,
        #"{"update_id":1,"message":null}"#, #"{"update_id":1,"callback_query":{"id":"q","from":{"id":5}}}"#,
        #"{"update_id":1,"callback_query":{"id":7,"from":{"id":5}}}"#,
        #"{"update_id":1,"callback_query":{"id":"q","from":{"id":5},"message":{"message_id":1}}}"#,
        #"{"update_id":1,"poll_answer":{"user":{"id":5,"first_name":"A"},"chat":{"id":1}}}"#,
        #"{"update_id":1,"poll_answer":{"from":{"id":"5"},"user":{"id":6},"chat":{"id":1,"type":"group"}}}"#,
        #"{"update_id":1,"poll_answer":{"from":{"id":5,"first_name":"\q"},"\u":1}}"#, #"{"update_id":1,"poll_answer":{"\q":1,"from":{"id":5}}}"#,
        #"{"update_id":1,"chat_member":null}"#, #"{"update_id":1,"chat_member":7}"#,
        "{\"update_id\":1,\"message\":{\"message_id\":2,\"chat\":{\"id\":3,\"type\":\"a\u{1}\"}}}",
        "{\"update_id\":1,\"poll\":\"a\u{1}\"}", "null", "[]", "7", "   ",
        String(repeating: "[", count: 512) + String(repeating: "]", count: 512),
        String(repeating: "[", count: 513) + String(repeating: "]", count: 513),
        #"{"update_id":1,"poll":"# + String(repeating: "[", count: 511) + String(repeating: "]", count: 511) + "}",
        #"{"update_id":1,"poll":"# + String(repeating: "{\"a\":", count: 511) + "1" + String(repeating: "}", count: 511) + "}",
    ])
    func agreesWithJSONDecoder(body: String) {
        #expect(decoder.decode(body.bytes) == ReferenceUpdateDecoder().decode(body.bytes))
    }

    @Test func invalidUTF8AgreesWithJSONDecoder() {
        let message = Array(#"{"update_id":1,"message":{"message_id":2,"chat":{"id":3,"type":"private"},"text":"X"}}"#.utf8)
        let skipped = Array(#"{"update_id":1,"poll":{"question":"X"}}"#.utf8)
        for bytes in [[0xFF], [0xC3], [0xED, 0xA0, 0x80], [0xC0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xC3, 0xA9]] as [[UInt8]] {
            for template in [message, skipped] {
                let index = template.firstIndex(of: UInt8(ascii: "X"))!
                let body = Array(template[..<index]) + bytes + template[(index + 1)...]
                #expect(decoder.decode(body) == ReferenceUpdateDecoder().decode(body), "\(bytes)")
            }
        }
    }

    @Test func utf16IsNotRead() {
        // JSONDecoder read UTF-16 and UTF-32 too; JSON between systems is UTF-8 (RFC 8259).
        let body: [UInt8] = [0xFF, 0xFE] + #"{"update_id":1}"#.utf8.flatMap { [$0, 0] }
        #expect(decoder.decode(body) == .failure(.invalidJSON))
    }

    @Test func invalidUTF8IsAnErrorNotACrash() {
        var body = Fixtures.message(text: "XX").bytes
        let index = body.firstIndex(of: UInt8(ascii: "X"))!
        body[index] = 0xFF
        body[index + 1] = 0xFE
        #expect(throws: UpdateDecodingError.self) { try decoder.decode(body).get() }
    }

    @Test func everyTruncationOfEveryFixtureIsHandled() {
        for (name, body) in Fixtures.everyType {
            let bytes = body.bytes
            for length in 0..<bytes.count {
                // Must return, never trap; a prefix of an object is never a whole update.
                let result = decoder.decode(Array(bytes[0..<length]))
                #expect((try? result.get()) == nil, "prefix \(length) of \(name) decoded")
            }
            #expect((try? decoder.decode(bytes).get()) != nil, "\(name) did not decode")
        }
    }

    @Test func randomBytesAndMutatedFixturesNeverCrash() {
        var generator = SplitMix64(seed: 0x7E1E_6A11)
        var decoded = 0
        for round in 0..<3000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int(generator.next() % 300)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            } else {
                bytes = Fixtures.everyType[Int(generator.next() % UInt64(Fixtures.everyType.count))].body.bytes
                for _ in 0..<(1 + Int(generator.next() % 4)) {
                    bytes[Int(generator.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: generator.next())
                }
            }
            let result = decoder.decode(bytes)
            if case .success = result { decoded += 1 }
            // The same answer as Foundation's JSONDecoder, where the two compare.
            if ReferenceUpdateDecoder.compares(bytes) {
                #expect(result == ReferenceUpdateDecoder().decode(bytes), "round \(round)")
            }
        }
        // Some mutations only touch string contents and still decode; random bytes never do.
        #expect(decoded < 1500)
    }
}

/// A small deterministic generator so a failing input can be reproduced.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
