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
            if case .success = decoder.decode(bytes) { decoded += 1 }
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
