/// Callback data longer than Telegram's 64 bytes travels as a token: the data is kept in the
/// state store (for the session's lifetime) and the button carries `~TOKEN`. A press of such a
/// button is resolved back to the original data before routing, on any responder of the pool.
public enum CallbackDataToken {
    /// Starts every token; services may not start their own callback data with it.
    public static let marker = "~"
    public static let telegramLimitBytes = 64

    /// Replaces over-long callback data in `methods`' keyboards with tokens. A button whose data
    /// cannot be stored (the store is down) is left out rather than sent broken.
    /// Returns the methods and how many buttons were left out.
    static func shorten(_ methods: [BotMethod], store: any StateStore, ttlSeconds: Int, deadline: Deadline) -> ([BotMethod], dropped: Int) {
        var dropped = 0
        func shorten(_ keyboard: InlineKeyboard?) -> InlineKeyboard? {
            guard var keyboard else { return nil }
            keyboard.rows = keyboard.rows.map { row in
                row.compactMap { button in
                    guard let data = button.callbackData, data.utf8.count > telegramLimitBytes else { return button }
                    guard let token = try? store.storeCallbackData(data, ttlSeconds: ttlSeconds, deadline: deadline) else {
                        dropped += 1
                        return nil
                    }
                    var short = button
                    short.callbackData = marker + token
                    return short
                }
            }.filter { !$0.isEmpty }
            return keyboard
        }
        let shortened = methods.map { method -> BotMethod in
            switch method {
            case .sendMessage(let chatID, let text, let keyboard):
                .sendMessage(chatID: chatID, text: text, keyboard: shorten(keyboard))
            case .editMessageText(let target, let text, let keyboard):
                .editMessageText(target: target, text: text, keyboard: shorten(keyboard))
            case .editMessageReplyMarkup(let target, let keyboard):
                .editMessageReplyMarkup(target: target, keyboard: shorten(keyboard))
            case .answerCallbackQuery:
                method
            }
        }
        return (shortened, dropped)
    }

    /// The update with a token in its callback data replaced by the data it stands for. A token
    /// that is unknown or expired gives nil data: the press is then an unknown callback. Nil
    /// when the store failed: the press must be tried again, not answered as unknown.
    static func resolve(_ update: Update, store: any StateStore, deadline: Deadline) -> Update? {
        guard case .callbackQuery(let query) = update.content, let data = query.data, data.hasPrefix(marker) else { return update }
        let original: String?
        do {
            original = try store.loadCallbackData(token: String(data.dropFirst(marker.count)), deadline: deadline)
        } catch {
            return nil
        }
        let resolved = CallbackQuery(
            id: query.id, from: query.from, message: query.message, inlineMessageID: query.inlineMessageID, data: original)
        return Update(id: update.id, type: update.type, content: .callbackQuery(resolved))
    }
}
