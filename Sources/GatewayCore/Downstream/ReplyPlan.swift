/// What an update's answer becomes: Bot API calls in order, and the session changes to store.
public struct ReplyPlan: Sendable, Equatable {
    public var methods: [BotMethod]
    public var stateChange: Completion.StateChange
    public var internalUserID: String?

    public init(methods: [BotMethod], stateChange: Completion.StateChange = .keep, internalUserID: String? = nil) {
        self.methods = methods
        self.stateChange = stateChange
        self.internalUserID = internalUserID
    }

    /// Formats a service's answer for `update`. Long texts become several messages (the
    /// keyboard goes with the last); a button press is always answered, first, so it stops
    /// spinning even when the service did not say to.
    public static func forAnswer(_ answer: ServiceAnswer, to update: Update) -> ReplyPlan {
        var plan = ReplyPlan(methods: [], internalUserID: answer.internalUserID)
        let query: CallbackQuery? = if case .callbackQuery(let query) = update.content { query } else { nil }
        for action in answer.actions {
            switch action {
            case .sendMessage(let text, let keyboard, let to):
                // A button on an inline message has no chat: the user's private chat has their id.
                guard let chatID = to ?? update.chat?.id ?? update.user?.id else { continue }
                let parts = TextSplitter.split(text)
                for (index, part) in parts.enumerated() {
                    plan.methods.append(.sendMessage(chatID: chatID, text: part, keyboard: index == parts.count - 1 ? keyboard : nil))
                }
            case .editMessage(let text, let keyboard):
                guard let target = query.flatMap(Self.target) else { continue }
                if let text {
                    plan.methods.append(.editMessageText(target: target, text: text, keyboard: keyboard))
                } else {
                    plan.methods.append(.editMessageReplyMarkup(target: target, keyboard: keyboard))
                }
            case .answerCallback(let text, let showAlert):
                guard let query else { continue }
                plan.methods.append(.answerCallbackQuery(callbackQueryID: query.id, text: text, showAlert: showAlert))
            case .setState(let state):
                plan.stateChange = .set(state)
            case .clearState:
                plan.stateChange = .clear
            }
        }
        return plan.answeringCallback(of: update)
    }

    /// The gateway's own answer to CONFIRM and CANCEL buttons: a short toast, and the buttons
    /// removed from the message so the choice cannot be made twice.
    public static func forGenericCallback(prefix: String, update: Update) -> ReplyPlan {
        guard case .callbackQuery(let query) = update.content else { return ReplyPlan(methods: []) }
        var methods: [BotMethod] = [
            .answerCallbackQuery(callbackQueryID: query.id, text: prefix == "CANCEL" ? "Cancelled" : "Confirmed", showAlert: false)
        ]
        if let target = target(of: query) { methods.append(.editMessageReplyMarkup(target: target, keyboard: nil)) }
        return ReplyPlan(methods: methods)
    }

    /// What the user hears when the service failed: the generic apology, as a message or, for
    /// a button press, as the callback's answer.
    public static func forFailure(of update: Update, texts: ReplyTexts) -> ReplyPlan {
        if case .callbackQuery(let query) = update.content {
            return ReplyPlan(methods: [.answerCallbackQuery(callbackQueryID: query.id, text: texts.serviceFailure, showAlert: false)])
        }
        guard let chatID = update.chat?.id ?? update.user?.id else { return ReplyPlan(methods: []) }
        return ReplyPlan(methods: [.sendMessage(chatID: chatID, text: texts.serviceFailure)])
    }

    private func answeringCallback(of update: Update) -> ReplyPlan {
        guard case .callbackQuery(let query) = update.content else { return self }
        if methods.contains(where: { if case .answerCallbackQuery = $0 { true } else { false } }) { return self }
        var plan = self
        plan.methods.insert(.answerCallbackQuery(callbackQueryID: query.id, text: nil, showAlert: false), at: 0)
        return plan
    }

    private static func target(of query: CallbackQuery) -> BotMethod.MessageTarget? {
        if let message = query.message { return .chat(chatID: message.chat.id, messageID: message.messageID) }
        if let inline = query.inlineMessageID { return .inline(inlineMessageID: inline) }
        return nil
    }
}
