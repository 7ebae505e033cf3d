import Testing

@testable import GatewayCore

@Suite struct BotMethodTests {
    @Test func sendMessageWebhookReplyIsABotAPICall() {
        let body = BotMethod.sendMessage(chatID: -100123, text: "Hi").webhookReplyBody
        #expect(String(decoding: body, as: UTF8.self) == #"{"method":"sendMessage","chat_id":-100123,"text":"Hi"}"#)
    }

    @Test func textIsEscapedAsJSON() {
        let text = "Say \"hi\"\\\n\ttab\u{01} 🙂 é"
        let body = String(decoding: BotMethod.sendMessage(chatID: 1, text: text).webhookReplyBody, as: UTF8.self)
        #expect(body == #"{"method":"sendMessage","chat_id":1,"text":"Say \"hi\"\\\n\ttab\u0001 🙂 é"}"#)
    }

    @Test func answerCallbackQueryCarriesTextAndAlertOnlyWhenSet() {
        let plain = BotMethod.answerCallbackQuery(callbackQueryID: "77", text: nil, showAlert: false).webhookReplyBody
        #expect(String(decoding: plain, as: UTF8.self) == #"{"method":"answerCallbackQuery","callback_query_id":"77"}"#)
        let alert = BotMethod.answerCallbackQuery(callbackQueryID: "77", text: "No", showAlert: true).webhookReplyBody
        #expect(
            String(decoding: alert, as: UTF8.self)
                == #"{"method":"answerCallbackQuery","callback_query_id":"77","text":"No","show_alert":true}"#)
    }
}
