/// A Telegram user or bot, as it appears in `from` and `user` fields.
///
/// Only the fields the gateway reads are decoded (``UpdateDecoder``); everything else Telegram
/// sends is skipped.
public struct User: Sendable, Equatable {
    public let id: Int64
    public let isBot: Bool
    public let firstName: String
    public let lastName: String?
    public let username: String?
    public let languageCode: String?

    public init(
        id: Int64, isBot: Bool = false, firstName: String, lastName: String? = nil,
        username: String? = nil, languageCode: String? = nil
    ) {
        self.id = id
        self.isBot = isBot
        self.firstName = firstName
        self.lastName = lastName
        self.username = username
        self.languageCode = languageCode
    }
}

/// A chat: private, group, supergroup or channel.
public struct Chat: Sendable, Equatable {
    public let id: Int64
    /// `private`, `group`, `supergroup` or `channel`; kept as text so a new kind is not an error.
    public let type: String

    public init(id: Int64, type: String) {
        self.id = id
        self.type = type
    }

    public var isPrivate: Bool { type == "private" }
}
