/// One incoming update from Telegram.
public struct Update: Sendable, Equatable {
    public let id: Int64
    public let type: UpdateType
    public let content: Content

    public enum Content: Sendable, Equatable {
        /// A message of any kind: `message`, `edited_message`, `channel_post`, business messages.
        case message(Message)
        case callbackQuery(CallbackQuery)
        /// Any other update type, known or not: who caused it and where, when the payload says.
        case other(user: User?, chat: Chat?)
    }

    public init(id: Int64, type: UpdateType, content: Content) {
        self.id = id
        self.type = type
        self.content = content
    }

    /// The Telegram user who caused the update, where there is one.
    public var user: User? {
        switch content {
        case .message(let message): message.from
        case .callbackQuery(let query): query.from
        case .other(let user, _): user
        }
    }

    /// The chat the update belongs to, where there is one.
    public var chat: Chat? {
        switch content {
        case .message(let message): message.chat
        case .callbackQuery(let query): query.message?.chat
        case .other(_, let chat): chat
        }
    }
}
