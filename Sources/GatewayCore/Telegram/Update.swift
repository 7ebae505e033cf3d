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

extension Update: Decodable {
    private struct Key: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
        static let updateID = Key(stringValue: "update_id")
    }

    /// The parties of update types the gateway does not route: each names its user `from` or
    /// `user` and most carry a `chat`. Undecodable parts count as absent.
    private struct Parties: Decodable {
        let user: User?
        let chat: Chat?

        private enum CodingKeys: String, CodingKey { case from, user, chat }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            user = (try? c.decodeIfPresent(User.self, forKey: .from)) ?? (try? c.decodeIfPresent(User.self, forKey: .user))
            chat = try? c.decodeIfPresent(Chat.self, forKey: .chat)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        id = try c.decode(Int64.self, forKey: .updateID)
        guard let key = c.allKeys.first(where: { $0.stringValue != Key.updateID.stringValue }) else {
            type = UpdateType("")
            content = .other(user: nil, chat: nil)
            return
        }
        type = UpdateType(key.stringValue)
        if UpdateType.messageTypes.contains(type) {
            content = .message(try c.decode(Message.self, forKey: key))
        } else if type == .callbackQuery {
            content = .callbackQuery(try c.decode(CallbackQuery.self, forKey: key))
        } else {
            let parties = try? c.decode(Parties.self, forKey: key)
            content = .other(user: parties?.user, chat: parties?.chat)
        }
    }
}
