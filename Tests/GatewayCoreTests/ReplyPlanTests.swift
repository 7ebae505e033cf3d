import GatewayTestSupport
import Synchronization
import Testing

@testable import GatewayCore

@Suite struct ReplyPlanTests {
    let user = User(id: 42, firstName: "Ada")
    let chat = Chat(id: 42, type: "private")
    var message: Update { Update(id: 1, type: .message, content: .message(Message(messageID: 3, from: user, chat: chat, text: "hi"))) }
    var callback: Update {
        Update(
            id: 2, type: .callbackQuery,
            content: .callbackQuery(
                CallbackQuery(id: "cb", from: user, message: CallbackMessage(messageID: 9, chat: chat), data: "CONNECT:1")))
    }

    @Test func actionsKeepTheirOrderAndStateChangesAreCollected() {
        let keyboard = InlineKeyboard(rows: [[.init(text: "Go", callbackData: "CONNECT:1")]])
        let plan = ReplyPlan.forAnswer(
            ServiceAnswer(
                actions: [
                    .sendMessage(text: "one", keyboard: nil), .setState(#"{"step":2}"#),
                    .sendMessage(text: "two", keyboard: nil), .sendMessage(text: "three", keyboard: keyboard),
                ], internalUserID: "u-9"),
            to: message)
        #expect(
            plan.methods == [
                .sendMessage(chatID: 42, text: "one"), .sendMessage(chatID: 42, text: "two"),
                .sendMessage(chatID: 42, text: "three", keyboard: keyboard),
            ])
        #expect(plan.stateChange == .set(#"{"step":2}"#))
        #expect(plan.internalUserID == "u-9")
    }

    @Test func aLongTextBecomesSeveralMessagesWithTheKeyboardOnTheLast() {
        let keyboard = InlineKeyboard(rows: [[.init(text: "More", callbackData: "SKIP")]])
        let text = String(repeating: "0123456789", count: 1000)
        let plan = ReplyPlan.forAnswer(ServiceAnswer(actions: [.sendMessage(text: text, keyboard: keyboard)]), to: message)
        #expect(plan.methods.count == 3)
        var joined = ""
        for (index, method) in plan.methods.enumerated() {
            guard case .sendMessage(_, let part, let partKeyboard) = method else {
                Issue.record("not a message")
                continue
            }
            joined += part
            #expect(part.utf16.count <= 4096)
            #expect(partKeyboard == (index == 2 ? keyboard : nil))
        }
        #expect(joined == text)
    }

    @Test func aButtonPressIsAlwaysAnsweredFirst() {
        let plan = ReplyPlan.forAnswer(ServiceAnswer(actions: [.editMessage(text: "Done", keyboard: nil)]), to: callback)
        #expect(
            plan.methods == [
                .answerCallbackQuery(callbackQueryID: "cb", text: nil, showAlert: false),
                .editMessageText(target: .chat(chatID: 42, messageID: 9), text: "Done", keyboard: nil),
            ])
        let answered = ReplyPlan.forAnswer(ServiceAnswer(actions: [.answerCallback(text: "Hi", showAlert: true)]), to: callback)
        #expect(answered.methods == [.answerCallbackQuery(callbackQueryID: "cb", text: "Hi", showAlert: true)])
        #expect(ReplyPlan.forAnswer(ServiceAnswer(actions: []), to: callback).methods.count == 1)
    }

    @Test func keyboardOnlyEditsEditTheMarkup() {
        let plan = ReplyPlan.forAnswer(
            ServiceAnswer(actions: [.editMessage(text: nil, keyboard: nil), .answerCallback(text: nil, showAlert: false)]), to: callback)
        #expect(plan.methods.first == .editMessageReplyMarkup(target: .chat(chatID: 42, messageID: 9), keyboard: nil))
    }

    @Test func genericConfirmAndCancelAnswerAndRemoveTheButtons() {
        #expect(
            ReplyPlan.forGenericCallback(prefix: "CONFIRM", update: callback).methods == [
                .answerCallbackQuery(callbackQueryID: "cb", text: "Confirmed", showAlert: false),
                .editMessageReplyMarkup(target: .chat(chatID: 42, messageID: 9), keyboard: nil),
            ])
        #expect(
            ReplyPlan.forGenericCallback(prefix: "CANCEL", update: callback).methods.first
                == .answerCallbackQuery(callbackQueryID: "cb", text: "Cancelled", showAlert: false))
    }

    @Test func failureIsTheGenericApologyInTheRightForm() {
        let texts = ReplyTexts.standard
        #expect(ReplyPlan.forFailure(of: message, texts: texts).methods == [.sendMessage(chatID: 42, text: texts.serviceFailure)])
        #expect(
            ReplyPlan.forFailure(of: callback, texts: texts).methods == [
                .answerCallbackQuery(callbackQueryID: "cb", text: texts.serviceFailure, showAlert: false)
            ])
    }

    @Test func editPayloadsAreBotAPIShaped() {
        let keyboard = InlineKeyboard(rows: [[.init(text: "A", callbackData: "ACCEPT:1")], [.init(text: "Docs", url: "https://x.y")]])
        let edit = BotMethod.editMessageText(target: .chat(chatID: 42, messageID: 9), text: "T", keyboard: keyboard)
        #expect(
            String(decoding: edit.parameters, as: UTF8.self)
                == #"{"chat_id":42,"message_id":9,"text":"T","reply_markup":{"inline_keyboard":[[{"text":"A","callback_data":"ACCEPT:1"}],[{"text":"Docs","url":"https://x.y"}]]}}"#
        )
        let inline = BotMethod.editMessageReplyMarkup(target: .inline(inlineMessageID: "AAQ"), keyboard: nil)
        #expect(String(decoding: inline.parameters, as: UTF8.self) == #"{"inline_message_id":"AAQ","reply_markup":{"inline_keyboard":[]}}"#)
    }
}

@Suite struct TextSplitterTests {
    @Test func shortTextIsOnePart() {
        #expect(TextSplitter.split("hello") == ["hello"])
        #expect(TextSplitter.split("") == [""])
    }

    @Test func partsJoinBackAndFitInUTF16Units() {
        let family = "👨‍👩‍👧‍👦"  // 11 UTF-16 units, one grapheme
        let text = String(repeating: "ab " + family + " é\n", count: 700)
        let parts = TextSplitter.split(text)
        #expect(parts.count > 1)
        #expect(parts.joined() == text)
        for part in parts {
            #expect(part.utf16.count <= 4096)
            #expect(!part.hasPrefix("\u{200D}"), "a grapheme was cut")
            #expect(part.unicodeScalars.first.map { !$0.properties.isGraphemeExtend } ?? true)
        }
    }

    @Test func prefersToBreakAfterANewline() {
        let text = String(repeating: "x", count: 3000) + "\n" + String(repeating: "y", count: 3000)
        #expect(TextSplitter.split(text) == [String(repeating: "x", count: 3000) + "\n", String(repeating: "y", count: 3000)])
    }

    @Test func oneHugeGraphemeIsCutByScalarsRatherThanLoopingForever() {
        let text = "e" + String(repeating: "\u{301}", count: 5000)
        let parts = TextSplitter.split(text)
        #expect(parts.joined() == text)
        #expect(parts.allSatisfy { $0.utf16.count <= 4096 })
        #expect(parts == ReferenceTextSplitter.split(text))
    }

    @Test func aSpaceWithAMarkOrAfterAPrefixIsNoPlaceToCut() {
        // U+0301 joins the space before it, U+0600 (a prepended mark) the space after it.
        for joined in [" \u{301}", "\u{600} "] {
            let text = String(repeating: "x", count: 6) + joined + "yyy"
            #expect(TextSplitter.split(text, limit: 9) == ReferenceTextSplitter.split(text, limit: 9))
            #expect(TextSplitter.split(text, limit: 9).allSatisfy { !$0.hasPrefix("\u{301}") && !$0.hasSuffix("\u{600}") })
        }
        #expect(TextSplitter.split("xxxxxx yyy", limit: 9) == ["xxxxxx ", "yyy"])
    }

    @Test func crLFStaysWhole() {
        #expect(TextSplitter.split("xxxxxxx\r\nyy", limit: 8) == ["xxxxxxx", "\r\nyy"])
        #expect(TextSplitter.split("xxxxx\r\nyyy", limit: 8) == ["xxxxx\r\n", "yyy"])
    }

    /// The byte splitter against the grapheme walk it replaced, on random texts of the scalars
    /// where graphemes and newlines are subtle (marks, joiners, flags, Hangul, CR LF, prefixes).
    @Test func samePartsAsTheGraphemeWalk() {
        let pieces = [
            "a", "b", " ", " ", "\n", "\r", "\r\n", "\u{B}", "\u{85}", "\u{2028}", "\u{2029}", "\u{301}", "\u{200D}", "\u{FE0F}",
            "é", "中", "😀", "👨", "\u{1F3FB}", "🇫", "🇷", "\u{600}", "\u{903}", "\u{915}", "\u{94D}", "\u{1100}", "\u{1161}", "\u{11A8}",
            "가",
        ]
        var generator = SplitMix64(seed: 0x5917_7E47)
        for round in 0..<4000 {
            let length = Int(generator.next() % 60)
            let text = (0..<length).map { _ in pieces[Int(generator.next() % UInt64(pieces.count))] }.joined()
            let limit = 2 + Int(generator.next() % 24)
            let parts = TextSplitter.split(text, limit: limit)
            #expect(parts == ReferenceTextSplitter.split(text, limit: limit), "round \(round): \(text.unicodeScalars.map(\.value)) at \(limit)")
            #expect(parts.joined() == text)
            #expect(parts.allSatisfy { $0.utf16.count <= limit })
        }
    }
}

@Suite struct BotAPIResponseTests {
    private func verdict(_ status: Int, _ body: String, attempt: Int = 0, remaining: Int64 = 30_000) -> BotAPIResponse.Verdict {
        BotAPIResponse.verdict(status: status, body: Array(body.utf8), attempt: attempt, remainingMilliseconds: remaining)
    }

    @Test func outcomes() {
        #expect(verdict(200, #"{"ok":true,"result":{}}"#) == .delivered)
        #expect(
            verdict(429, #"{"ok":false,"error_code":429,"parameters":{"retry_after":1}}"#) == .failed(.rateLimited(retryAfterSeconds: 1)),
            "never waited out by the client: the pool pauses and a worker sends it later")
        #expect(verdict(429, #"{"ok":false,"error_code":429,"parameters":{"retry_after":35}}"#) == .failed(.rateLimited(retryAfterSeconds: 35)))
        #expect(verdict(429, #"{"ok":false,"error_code":429}"#) == .failed(.rateLimited(retryAfterSeconds: 1)))
        #expect(
            verdict(
                400,
                #"{"ok":false,"error_code":400,"description":"Bad Request: message is not modified: specified new message content and reply markup are exactly the same"}"#
            ) == .delivered)
        #expect(verdict(400, #"{"ok":false,"description":"Bad Request: chat not found"}"#) == .failed(.rejected(status: 400)))
        #expect(verdict(403, #"{"ok":false,"description":"Forbidden: bot was blocked by the user"}"#) == .failed(.rejected(status: 403)))
        #expect(verdict(502, "<html>") == .retry(afterMilliseconds: 200))
        #expect(verdict(502, "<html>", attempt: 1) == .failed(.server(status: 502)))
        #expect(BotAPIResponse.verdictForTransportFailure(attempt: 0, remainingMilliseconds: 5000) == .retry(afterMilliseconds: 100))
        #expect(BotAPIResponse.verdictForTransportFailure(attempt: 1, remainingMilliseconds: 5000) == .failed(.transport))
    }

    @Test(arguments: [-5, -1, Int.min / 2, 0])
    func aNegativeOrZeroRetryAfterIsTakenAsNoWaitNotATrap(seconds: Int) {
        let body = #"{"ok":false,"error_code":429,"parameters":{"retry_after":\#(seconds)}}"#
        #expect(verdict(429, body) == .failed(.rateLimited(retryAfterSeconds: 0)))
    }

    @Test func anAbsurdRetryAfterIsClampedNotOverflowed() {
        #expect(verdict(429, #"{"parameters":{"retry_after":9223372036854775807}}"#) == .failed(.rateLimited(retryAfterSeconds: 3600)))
    }
}

@Suite struct CircuitBreakerTests {
    final class TestClock: Sendable {
        let now = Mutex(UInt64(1_000_000_000))
        func advance(seconds: Double) { now.withLock { $0 += UInt64(seconds * 1e9) } }
    }

    @Test func opensAfterRepeatedFailuresProbesAndCloses() {
        let clock = TestClock()
        let breaker = CircuitBreaker(threshold: 3, openSeconds: 10) { clock.now.withLock { $0 } }
        for _ in 0..<3 {
            #expect(breaker.allows(.matching))
            breaker.recordFailure(.matching)
        }
        #expect(breaker.state(of: .matching) == .open)
        #expect(!breaker.allows(.matching))
        #expect(breaker.allows(.conversation), "other services are unaffected")
        clock.advance(seconds: 10)
        #expect(breaker.allows(.matching), "one probe")
        #expect(!breaker.allows(.matching), "only one probe at a time")
        breaker.recordFailure(.matching)
        #expect(breaker.state(of: .matching) == .open)
        clock.advance(seconds: 10)
        #expect(breaker.allows(.matching))
        breaker.recordSuccess(.matching)
        #expect(breaker.state(of: .matching) == .closed)
        #expect(breaker.allows(.matching))
    }
}
