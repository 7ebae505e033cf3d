/// A message, edited message, channel post or business message.
public struct Message: Sendable, Equatable {
    public let messageID: Int64
    public let from: User?
    public let chat: Chat
    public let text: String?
    public let entities: [MessageEntity]

    public init(messageID: Int64, from: User?, chat: Chat, text: String?, entities: [MessageEntity] = []) {
        self.messageID = messageID
        self.from = from
        self.chat = chat
        self.text = text
        self.entities = entities
    }

    /// The command this message starts with, as Telegram defines commands; `nil` for other text.
    public var command: BotCommand? {
        guard let text else { return nil }
        return BotCommand(text: text, entities: entities)
    }
}

/// A special span of a message's text. Offsets and lengths count UTF-16 code units.
public struct MessageEntity: Sendable, Equatable {
    public let type: String
    public let offset: Int
    public let length: Int

    public init(type: String, offset: Int, length: Int) {
        self.type = type
        self.offset = offset
        self.length = length
    }
}

/// The message a callback button was attached to. Telegram sends an `InaccessibleMessage`
/// (date 0, no content) when the message is too old; both carry a chat and a message id.
public struct CallbackMessage: Sendable, Equatable {
    public let messageID: Int64
    public let chat: Chat

    public init(messageID: Int64, chat: Chat) {
        self.messageID = messageID
        self.chat = chat
    }
}

/// A press of an inline keyboard button.
public struct CallbackQuery: Sendable, Equatable {
    public let id: String
    public let from: User
    public let message: CallbackMessage?
    public let inlineMessageID: String?
    public let data: String?

    public init(id: String, from: User, message: CallbackMessage?, inlineMessageID: String? = nil, data: String?) {
        self.id = id
        self.from = from
        self.message = message
        self.inlineMessageID = inlineMessageID
        self.data = data
    }
}
