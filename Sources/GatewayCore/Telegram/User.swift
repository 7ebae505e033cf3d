/// A Telegram user or bot, as it appears in `from` and `user` fields.
///
/// Only the fields the gateway reads are decoded; everything else Telegram sends is skipped.
public struct User: Decodable, Sendable, Equatable {
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

    private enum CodingKeys: String, CodingKey {
        case id, username
        case isBot = "is_bot"
        case firstName = "first_name"
        case lastName = "last_name"
        case languageCode = "language_code"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(Int64.self, forKey: .id)
        // Telegram always sends both, but a missing flag or name is no reason to drop an update.
        isBot = try c.decodeIfPresent(Bool.self, forKey: .isBot) ?? false
        firstName = try c.decodeIfPresent(String.self, forKey: .firstName) ?? ""
        lastName = try c.decodeIfPresent(String.self, forKey: .lastName)
        username = try c.decodeIfPresent(String.self, forKey: .username)
        languageCode = try c.decodeIfPresent(String.self, forKey: .languageCode)
    }
}

/// A chat: private, group, supergroup or channel.
public struct Chat: Decodable, Sendable, Equatable {
    public let id: Int64
    /// `private`, `group`, `supergroup` or `channel`; kept as text so a new kind is not an error.
    public let type: String

    public init(id: Int64, type: String) {
        self.id = id
        self.type = type
    }

    public var isPrivate: Bool { type == "private" }
}
