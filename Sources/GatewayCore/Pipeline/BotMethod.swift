/// A Bot API call the gateway makes, either as a webhook reply (the HTTP 200 body, which
/// Telegram executes after our answer) or, later, as a request to the Bot API.
public enum BotMethod: Sendable, Equatable {
    case sendMessage(chatID: Int64, text: String, keyboard: InlineKeyboard? = nil)
    case editMessageText(target: MessageTarget, text: String, keyboard: InlineKeyboard?)
    case editMessageReplyMarkup(target: MessageTarget, keyboard: InlineKeyboard?)
    case answerCallbackQuery(callbackQueryID: String, text: String?, showAlert: Bool)

    /// The message an edit applies to: one in a chat, or one sent via inline mode.
    public enum MessageTarget: Sendable, Equatable {
        case chat(chatID: Int64, messageID: Int64)
        case inline(inlineMessageID: String)
    }

    /// The Bot API method name.
    public var name: String {
        switch self {
        case .sendMessage: "sendMessage"
        case .editMessageText: "editMessageText"
        case .editMessageReplyMarkup: "editMessageReplyMarkup"
        case .answerCallbackQuery: "answerCallbackQuery"
        }
    }

    /// The JSON parameters of a Bot API request (no `"method"`).
    public var parameters: [UInt8] {
        var writer = JSONWriter()
        writeParameters(into: &writer)
        return writer.finish()
    }

    /// The JSON body of a webhook reply: the parameters plus `"method"`.
    public var webhookReplyBody: [UInt8] {
        var writer = JSONWriter()
        writer.field("method", name)
        writeParameters(into: &writer)
        return writer.finish()
    }

    private func writeParameters(into writer: inout JSONWriter) {
        switch self {
        case .sendMessage(let chatID, let text, let keyboard):
            writer.field("chat_id", chatID)
            writer.field("text", text)
            if let keyboard { writer.field("reply_markup", json: keyboard.replyMarkupJSON) }
        case .editMessageText(let target, let text, let keyboard):
            Self.write(target, into: &writer)
            writer.field("text", text)
            if let keyboard { writer.field("reply_markup", json: keyboard.replyMarkupJSON) }
        case .editMessageReplyMarkup(let target, let keyboard):
            Self.write(target, into: &writer)
            writer.field("reply_markup", json: (keyboard ?? InlineKeyboard(rows: [])).replyMarkupJSON)
        case .answerCallbackQuery(let id, let text, let showAlert):
            writer.field("callback_query_id", id)
            if let text { writer.field("text", text) }
            if showAlert { writer.field("show_alert", true) }
        }
    }

    private static func write(_ target: MessageTarget, into writer: inout JSONWriter) {
        switch target {
        case .chat(let chatID, let messageID):
            writer.field("chat_id", chatID)
            writer.field("message_id", messageID)
        case .inline(let id):
            writer.field("inline_message_id", id)
        }
    }
}
