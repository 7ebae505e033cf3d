import Testing

@testable import GatewayCore

@Suite struct PendingSendTests {
    @Test func theStoredFormIsOneHeadLineThenTheParametersAndReadsBack() {
        let message = PendingSend(.sendMessage(chatID: -100_123, text: "a b\nc"), requestID: "r-1", index: 2)
        let head = message.encoded.prefix { $0 != UInt8(ascii: "\n") }
        #expect(String(decoding: head, as: UTF8.self) == "v1 0 -100123 sendMessage r-1.2")
        #expect(Array(message.encoded.dropFirst(head.count + 1)) == message.call.parameters)
        #expect(PendingSend.decode(message.encoded) == message)

        let answer = PendingSend(.answerCallbackQuery(callbackQueryID: "q", text: nil, showAlert: false), requestID: "r", index: 0)
            .failedOnce().failedOnce()
        #expect(String(decoding: answer.encoded.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self) == "v1 2 - answerCallbackQuery r.0")
        #expect(PendingSend.decode(answer.encoded) == answer)
    }
}
