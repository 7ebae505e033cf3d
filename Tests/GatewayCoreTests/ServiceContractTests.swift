import Foundation
import GatewayTestSupport
import Testing

@testable import GatewayCore

@Suite struct ServiceAnswerTests {
    private func parse(_ json: String, isCallback: Bool = true) -> Result<ServiceAnswer, ServiceCallError> {
        ServiceAnswer.parse(Array(json.utf8), isCallback: isCallback)
    }

    @Test func fullAnswerParses() throws {
        let answer = try parse(
            #"""
            {"actions":[
              {"type":"answer_callback","text":"Saved","show_alert":true},
              {"type":"edit_message","text":"Your match","keyboard":[[{"text":"Chat","callback_data":"CONNECT:7"},{"text":"Site","url":"https://example.com"}]]},
              {"type":"send_message","text":"Hello"},
              {"type":"set_state","state":{"flow":"match","step":2,"data":{"ids":[1,2]}}}
            ],"internal_user_id":"u-123","extra":"ignored"}
            """#
        ).get()
        #expect(answer.internalUserID == "u-123")
        #expect(
            answer.actions == [
                .answerCallback(text: "Saved", showAlert: true),
                .editMessage(
                    text: "Your match",
                    keyboard: InlineKeyboard(rows: [
                        [
                            .init(text: "Chat", callbackData: "CONNECT:7"), .init(text: "Site", url: "https://example.com"),
                        ]
                    ])),
                .sendMessage(text: "Hello", keyboard: nil),
                .setState(#"{"data":{"ids":[1,2]},"flow":"match","step":2}"#),
            ])
    }

    /// Of repeated keys the first stays, spelled as it was; the keys go in the order of their
    /// UTF-8 bytes, whatever order they came in (Swift's `<` has none between "é1" and "e\u{301}").
    @Test func aStateIsStoredAsCompactJSONWithItsKeysInTheirBytesOrder() throws {
        for state in [
            #"{ "é1" : 2, "e\u0301": [ 1.0, 1e2, 2.5, "\u0041" ], "\u00e9": 4, "b": { "y": null, "x": true } }"#,
            #"{"b":{"x":true,"y":null},"e\u0301":[1,100,2.5,"A"],"é":4,"é1":2}"#,
        ] {
            let answer = try parse(#"{"actions":[{"type":"set_state","state":\#(state)}]}"#).get()
            #expect(answer.actions == [.setState("{\"b\":{\"x\":true,\"y\":null},\"e\u{301}\":[1,100,2.5,\"A\"],\"é1\":2}")])
        }
    }

    @Test(arguments: [
        "", "[]", "{}", #"{"actions":{}}"#,
        #"{"actions":[{"type":"teleport"}]}"#,
        #"{"actions":[{"type":"send_message"}]}"#,
        #"{"actions":[{"type":"send_message","text":""}]}"#,
        #"{"actions":[{"type":"set_state","state":[1]}]}"#,
        #"{"actions":[{"type":"send_message","text":"x","keyboard":[[{"text":"b"}]]}]}"#,
        #"{"actions":[{"type":"send_message","text":"x","keyboard":[[{"text":"b","callback_data":"d","url":"https://x"}]]}]}"#,
        #"{"actions":[{"type":"send_message","text":"x","keyboard":[[{"text":"b","url":"javascript:alert(1)"}]]}]}"#,
        #"{"actions":[{"type":"send_message","text":"x","keyboard":[[]]}]}"#,
        #"{"actions":[{"type":"edit_message"}]}"#,
        #"{"actions":[],"internal_user_id":""}"#,
    ])
    func invalidAnswersAreServiceErrors(json: String) {
        #expect(parse(json) == .failure(.invalidAnswer))
    }

    @Test func callbackOnlyActionsAreRefusedForMessages() {
        #expect(parse(#"{"actions":[{"type":"edit_message","text":"x"}]}"#, isCallback: false) == .failure(.invalidAnswer))
        #expect(parse(#"{"actions":[{"type":"answer_callback"}]}"#, isCallback: false) == .failure(.invalidAnswer))
    }

    @Test func limitsAreEnforced() {
        let eleven = Array(repeating: #"{"type":"clear_state"}"#, count: 11).joined(separator: ",")
        #expect(parse(#"{"actions":[\#(eleven)]}"#) == .failure(.invalidAnswer))
        let data = String(repeating: "d", count: 1025)
        #expect(
            parse(#"{"actions":[{"type":"send_message","text":"x","keyboard":[[{"text":"b","callback_data":"\#(data)"}]]}]}"#)
                == .failure(.invalidAnswer))
        let text = String(repeating: "t", count: 20_001)
        #expect(parse(#"{"actions":[{"type":"send_message","text":"\#(text)"}]}"#) == .failure(.invalidAnswer))
    }

    @Test func textIsMeasuredAsTelegramMeasuresItNotInCharacters() {
        // One character: a letter and 30,000 combining marks, 30,001 UTF-16 code units.
        let mark = "e" + String(repeating: "\u{301}", count: 30_000)
        #expect(mark.count == 1)
        #expect(parse(#"{"actions":[{"type":"send_message","text":"\#(mark)"}]}"#) == .failure(.invalidAnswer))
        let emoji = String(repeating: "😀", count: 10_000)  // 20,000 code units: just within
        #expect((try? parse(#"{"actions":[{"type":"send_message","text":"\#(emoji)"}]}"#).get()) != nil)
    }

    @Test func deepNestingIsRefusedBeforeAnythingRecursesOnIt() {
        let deep = String(repeating: #"{"a":"#, count: 500) + "1" + String(repeating: "}", count: 500)
        #expect(parse(#"{"actions":[{"type":"set_state","state":\#(deep)}]}"#) == .failure(.invalidAnswer))
        let shallow = String(repeating: #"{"a":"#, count: 20) + "1" + String(repeating: "}", count: 20)
        #expect((try? parse(#"{"actions":[{"type":"set_state","state":\#(shallow)}]}"#).get()) != nil)
        // Brackets inside strings do not count.
        let quoted = String(repeating: "[", count: 100)
        #expect((try? parse(#"{"actions":[{"type":"send_message","text":"\#(quoted)"}]}"#).get()) != nil)
    }

    @Test func anAnswerOverTheSizeBoundIsRefusedUnread() {
        let body = [UInt8](repeating: 0x20, count: ServiceAnswer.maxAnswerBytes + 1)
        #expect(ServiceAnswer.parse(body, isCallback: false) == .failure(.tooLarge))
    }

    /// Answers the byte reader must read as Foundation's `JSONDecoder` did: numbers of every
    /// form in a state, repeated and escaped keys, nulls, wrong types, malformed values read
    /// and unread, and bytes that are not UTF-8.
    static let readerCases: [String] = [
        #"{"actions":[{"type":"set_state","state":{"a":1e2,"b":1.5,"c":-0,"d":-0.0,"e":1e-400,"f":9223372036854775808}}]}"#,
        #"{"actions":[{"type":"set_state","state":{"a":1e400}}]}"#,
        #"{"actions":[{"type":"set_state","state":{"a":-9223372036854775809,"b":123456789012345678901234567890,"c":9007199254740993.0}}]}"#,
        #"{"actions":[{"type":"set_state","state":{"a":01}}]}"#,
        #"{"actions":[{"type":"set_state","state":{"a":1.}}]}"#,
        #"{"actions":[{"type":"set_state","state":{"a":1,"a":2,"\u0061":3}}]}"#,
        #"{"actions":[{"type":"set_state","state":{"b":1,"\u00e9":2,"e\u0301":3,"é":4,"a":{"z":0,"Z":[{"y":1,"x":2}]}}}]}"#,
        #"{"actions":[{"type":"set_state","state":{"a":[null,true,false,"x",{},[]],"b":null}}]}"#,
        #"{"actions":[{"type":"set_state","state":{"a":"\ud800"}}]}"#,
        #"{"actions":[{"type":"set_state","state":{"a":"\ud83d\ude00 \u00e9\n"}}]}"#,
        #"{"actions":[{"type":"set_state","state":null}]}"#,
        #"{"actions":[{"type":"set_state","state":{"a":[1,],}}]}"#,
        #"{"actions":[{"type":"send_message","text":"a","text":"b"}]}"#,
        #"{"actions":[{"type":"send_message","text":null}]}"#,
        #"{"actions":[{"type":"send_message","text":"x","chat_id":1e3}]}"#,
        #"{"actions":[{"type":"send_message","text":"x","chat_id":1.5}]}"#,
        #"{"actions":[{"type":"send_message","text":"x","chat_id":"7"}]}"#,
        #"{"actions":[{"type":"send_message","text":"x","keyboard":null}]}"#,
        #"{"actions":[{"type":"send_message","text":"x","keyboard":[[{"text":"b","callback_data":null,"url":"tg://x"}]]}]}"#,
        #"{"actions":[{"type":"send_message","text":"x","keyboard":[{"text":"b"}]}]}"#,
        #"{"actions":[{"type":"answer_callback","show_alert":1}]}"#,
        #"{"actions":[{"type":"answer_callback","show_alert":null}]}"#,
        #"{"actions":[{"type":"send_message","text":"x","extra":01,"more":"\ud800"}]}"#,
        #"{"actions":[{"ty\u0070e":"send_message","t\u0065xt":"escaped keys"}],"internal_user_id":"u"}"#,
        #"{"actions":[{"type":"send_message","text":"x"}],"internal_user_id":null}"#,
        #"{"actions":[{"type":"send_message","text":"x"}],"internal_user_id":7}"#,
        #"{"actions":null}"#, #"{"actions":[null]}"#, #"{"actions":[1]}"#, "null", "1", #""x""#,
        "\u{FEFF}" + #" {"actions":[]} "#, #"{"actions":[]} x"#, #"{"actions":[],}"#, #"{"actions":[]"#,
        // Eleven actions, one of them unreadable: refused for their number, unread.
        #"{"actions":["# + Array(repeating: #"{"type":"clear_state"}"#, count: 10).joined(separator: ",")
            + #",{"type":"send_message","text":"\ud800"}]}"#,
    ]

    @Test(arguments: readerCases)
    func readsAsJSONDecoderDid(json: String) {
        let body = Array(json.utf8)
        for isCallback in [false, true] {
            #expect(ServiceAnswer.parse(body, isCallback: isCallback) == ReferenceServiceAnswerDecoder.parse(body, isCallback: isCallback))
        }
    }

    @Test func mutatedAnswersReadAsJSONDecoderDid() {
        var generator = SplitMix64(seed: 0x5E71_CE00)
        let samples =
            Self.readerCases.map { Array($0.utf8) } + [
                Array(
                    #"{"actions":[{"type":"answer_callback","text":"Done","show_alert":true},{"type":"edit_message","text":"e","keyboard":[[{"text":"A","callback_data":"ACCEPT:1"}]]}]}"#
                        .utf8),
                Array(#"{"actions":[{"type":"send_message","text":"You said: hi"},{"type":"set_state","state":{"flow":"chat","messages":2}}]}"#.utf8),
            ]
        let inserted = Array(#"{}[],:"\0e-.1n"#.utf8)
        var read = 0
        for round in 0..<4000 {
            var bytes = samples[Int(generator.next() % UInt64(samples.count))]
            for _ in 0..<(1 + Int(generator.next() % 3)) where !bytes.isEmpty {
                let at = Int(generator.next() % UInt64(bytes.count))
                switch generator.next() % 3 {
                case 0: bytes[at] = UInt8(truncatingIfNeeded: generator.next())
                case 1: bytes.remove(at: at)
                default: bytes.insert(inserted[Int(generator.next() % UInt64(inserted.count))], at: at)
                }
            }
            let isCallback = round % 2 == 0
            let result = ServiceAnswer.parse(bytes, isCallback: isCallback)
            if case .success = result { read += 1 }
            if ReferenceServiceAnswerDecoder.compares(bytes) {
                #expect(result == ReferenceServiceAnswerDecoder.parse(bytes, isCallback: isCallback), "round \(round)")
            }
        }
        // Mutations inside strings still read: answers were compared, not only refusals.
        #expect(read > 100)
    }
}

@Suite struct ServiceRequestTests {
    let user = User(id: 42, firstName: "Ada", username: "ada", languageCode: "en")
    let chat = Chat(id: 42, type: "private")

    private func json(_ request: ServiceRequest) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
    }

    @Test func commandWithSession() throws {
        let update = Update(id: 5, type: .message, content: .message(Message(messageID: 1, from: user, chat: chat, text: "/start ref")))
        let route = Route.command(BotCommand(name: "start", arguments: "ref"), .service(.userProfile))
        let request = ServiceRequest(
            requestID: "r1", update: update, route: route, session: Session(internalUserID: "u-1", conversationState: #"{"flow":"x"}"#, isNew: true))
        let body = try json(request)
        // The nested objects are written in place, in this order.
        #expect(
            String(decoding: request.body, as: UTF8.self)
                == #"{"request_id":"r1","update_id":5,"update_type":"message","user":{"id":42,"username":"ada","first_name":"Ada","language_code":"en"},"chat":{"id":42,"type":"private"},"session_available":true,"internal_user_id":"u-1","new_session":true,"conversation_state":{"flow":"x"},"command":{"name":"start","arguments":"ref"}}"#
        )
        #expect(body["request_id"] as? String == "r1")
        #expect(body["update_id"] as? Int == 5)
        #expect(body["update_type"] as? String == "message")
        #expect((body["user"] as? [String: Any])?["username"] as? String == "ada")
        #expect((body["chat"] as? [String: Any])?["type"] as? String == "private")
        #expect(body["internal_user_id"] as? String == "u-1")
        #expect(body["session_available"] as? Bool == true)
        #expect(body["new_session"] as? Bool == true)
        #expect((body["conversation_state"] as? [String: Any])?["flow"] as? String == "x")
        #expect((body["command"] as? [String: Any])?["name"] as? String == "start")
        #expect((body["command"] as? [String: Any])?["arguments"] as? String == "ref")
        #expect(body["text"] == nil)
    }

    @Test func callbackWithoutSessionSaysSo() throws {
        let query = CallbackQuery(id: "cb1", from: user, message: CallbackMessage(messageID: 9, chat: chat), data: "CONNECT:7")
        let update = Update(id: 6, type: .callbackQuery, content: .callbackQuery(query))
        let body = try json(ServiceRequest(requestID: "r2", update: update, route: .callback(prefix: "CONNECT", .service(.matching)), session: nil))
        #expect(body["session_available"] as? Bool == false)
        #expect(body["internal_user_id"] is NSNull)
        #expect(body["conversation_state"] is NSNull)
        let callback = try #require(body["callback"] as? [String: Any])
        #expect(callback["data"] as? String == "CONNECT:7")
        #expect(callback["message_id"] as? Int == 9)
        #expect(callback["id"] as? String == "cb1")
    }
}
