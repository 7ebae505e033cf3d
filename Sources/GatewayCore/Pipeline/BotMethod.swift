/// A Bot API call the gateway makes, either as a webhook reply (the HTTP 200 body, which
/// Telegram executes after our answer) or, later, as a request to the Bot API.
public enum BotMethod: Sendable, Equatable {
    case sendMessage(chatID: Int64, text: String)
    case answerCallbackQuery(callbackQueryID: String, text: String?, showAlert: Bool)

    /// The Bot API method name.
    public var name: String {
        switch self {
        case .sendMessage: "sendMessage"
        case .answerCallbackQuery: "answerCallbackQuery"
        }
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
        case .sendMessage(let chatID, let text):
            writer.field("chat_id", chatID)
            writer.field("text", text)
        case .answerCallbackQuery(let id, let text, let showAlert):
            writer.field("callback_query_id", id)
            if let text { writer.field("text", text) }
            if showAlert { writer.field("show_alert", true) }
        }
    }
}
