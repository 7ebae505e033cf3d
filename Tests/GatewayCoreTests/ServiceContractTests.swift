import Foundation
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
                .setState(.object(["flow": .string("match"), "step": .integer(2), "data": .object(["ids": .array([.integer(1), .integer(2)])])])),
            ])
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
        let body = try json(
            ServiceRequest(
                requestID: "r1", update: update, route: route,
                session: Session(internalUserID: "u-1", conversationState: #"{"flow":"x"}"#, isNew: true)))
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
