import Foundation
import GatewayCore

/// The update decoder the gateway had before its byte decoder: Foundation's `JSONDecoder`
/// through `Decodable`. Kept only as the reference the byte decoder is checked against (the
/// `decoder-diff` fuzz target, the decoder's unit tests): same update, or the same error class.
public struct ReferenceUpdateDecoder: Sendable {
    public init() {}

    public func decode(_ body: [UInt8]) -> Result<Update, UpdateDecodingError> {
        if body.isEmpty { return .failure(.emptyBody) }
        do {
            return .success(try JSONDecoder().decode(ReferenceUpdate.self, from: Data(body)).update)
        } catch let error as DecodingError {
            return .failure(Self.errorClass(of: error))
        } catch {
            return .failure(.invalidJSON)
        }
    }

    /// Whether the byte decoder's answer must equal this one's. Not for a body with several
    /// fields besides `update_id` (never one from Telegram): JSONDecoder's field order is a hash
    /// order, so the type it picks is arbitrary. Not for UTF-16 or UTF-32 (a byte order mark,
    /// or a NUL among the first bytes), which JSONDecoder transcodes: JSON between systems is
    /// UTF-8 (RFC 8259), all the byte decoder reads.
    public static func compares(_ body: [UInt8]) -> Bool {
        if body.prefix(4).contains(0) || body.starts(with: [0xFE, 0xFF]) || body.starts(with: [0xFF, 0xFE]) { return false }
        guard let names = try? JSONDecoder().decode(FieldNames.self, from: Data(body)).names else { return true }
        return names.subtracting(["update_id"]).count <= 1
    }

    private struct FieldNames: Decodable {
        let names: Set<String>

        init(from decoder: any Decoder) throws {
            names = Set(try decoder.container(keyedBy: FieldKey.self).allKeys.map(\.stringValue))
        }
    }

    static func errorClass(of error: DecodingError) -> UpdateDecodingError {
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return .invalidJSON
        case .keyNotFound(let key, let context) where context.codingPath.isEmpty:
            return key.stringValue == "update_id" ? .missingUpdateID : .invalidPayload
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            switch context.codingPath.map(\.stringValue) {
            case []: return .notAnObject
            case ["update_id"]: return .missingUpdateID
            default: return .invalidPayload
            }
        default:
            return .invalidPayload
        }
    }
}

/// A field of any name.
private struct FieldKey: CodingKey {
    let stringValue: String
    init(stringValue: String) { self.stringValue = stringValue }
    var intValue: Int? { nil }
    init?(intValue: Int) { nil }
    static let updateID = FieldKey(stringValue: "update_id")
}

private struct ReferenceUpdate: Decodable {
    let update: Update

    /// The parties of update types the gateway does not route: each names its user `from` or
    /// `user` and most carry a `chat`. Undecodable parts count as absent.
    private struct Parties: Decodable {
        let user: User?
        let chat: Chat?

        private enum CodingKeys: String, CodingKey { case from, user, chat }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            user =
                (try? c.decodeIfPresent(ReferenceUser.self, forKey: .from))?.user
                ?? (try? c.decodeIfPresent(ReferenceUser.self, forKey: .user))?.user
            chat = (try? c.decodeIfPresent(ReferenceChat.self, forKey: .chat))?.chat
        }
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: FieldKey.self)
        let id = try c.decode(Int64.self, forKey: FieldKey.updateID)
        // The key order of a Foundation container is not the document's: compare updates with
        // one type field only.
        guard let key = c.allKeys.first(where: { $0.stringValue != FieldKey.updateID.stringValue }) else {
            update = Update(id: id, type: UpdateType(""), content: .other(user: nil, chat: nil))
            return
        }
        let type = UpdateType(key.stringValue)
        let content: Update.Content
        if [UpdateType.message, .editedMessage, .channelPost, .editedChannelPost, .businessMessage, .editedBusinessMessage].contains(type) {
            content = .message(try c.decode(ReferenceMessage.self, forKey: key).message)
        } else if type == .callbackQuery {
            content = .callbackQuery(try c.decode(ReferenceCallbackQuery.self, forKey: key).query)
        } else {
            let parties = try? c.decode(Parties.self, forKey: key)
            content = .other(user: parties?.user, chat: parties?.chat)
        }
        update = Update(id: id, type: type, content: content)
    }
}

private struct ReferenceMessage: Decodable {
    let message: Message

    private enum CodingKeys: String, CodingKey {
        case from, chat, text, entities
        case messageID = "message_id"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let messageID = try c.decode(Int64.self, forKey: .messageID)
        let from = try c.decodeIfPresent(ReferenceUser.self, forKey: .from)?.user
        let chat = try c.decode(ReferenceChat.self, forKey: .chat).chat
        let text = try c.decodeIfPresent(String.self, forKey: .text)
        let entities = try c.decodeIfPresent([ReferenceEntity].self, forKey: .entities)?.map(\.entity) ?? []
        message = Message(messageID: messageID, from: from, chat: chat, text: text, entities: entities)
    }
}

private struct ReferenceEntity: Decodable {
    let entity: MessageEntity

    private enum CodingKeys: String, CodingKey { case type, offset, length }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        entity = MessageEntity(
            type: try c.decode(String.self, forKey: .type), offset: try c.decode(Int.self, forKey: .offset),
            length: try c.decode(Int.self, forKey: .length))
    }
}

private struct ReferenceCallbackQuery: Decodable {
    let query: CallbackQuery

    private enum CodingKeys: String, CodingKey {
        case id, from, message, data
        case inlineMessageID = "inline_message_id"
    }

    private struct ReferenceCallbackMessage: Decodable {
        let messageID: Int64
        let chat: ReferenceChat

        private enum CodingKeys: String, CodingKey {
            case chat
            case messageID = "message_id"
        }
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let id = try c.decode(String.self, forKey: .id)
        let from = try c.decode(ReferenceUser.self, forKey: .from).user
        let message = try c.decodeIfPresent(ReferenceCallbackMessage.self, forKey: .message)
        // The order of the synthesized decoder it replaces: its coding keys'.
        let data = try c.decodeIfPresent(String.self, forKey: .data)
        let inline = try c.decodeIfPresent(String.self, forKey: .inlineMessageID)
        query = CallbackQuery(
            id: id, from: from, message: message.map { CallbackMessage(messageID: $0.messageID, chat: $0.chat.chat) }, inlineMessageID: inline,
            data: data)
    }
}

private struct ReferenceUser: Decodable {
    let user: User

    private enum CodingKeys: String, CodingKey {
        case id, username
        case isBot = "is_bot"
        case firstName = "first_name"
        case lastName = "last_name"
        case languageCode = "language_code"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        user = User(
            id: try c.decode(Int64.self, forKey: .id), isBot: try c.decodeIfPresent(Bool.self, forKey: .isBot) ?? false,
            firstName: try c.decodeIfPresent(String.self, forKey: .firstName) ?? "",
            lastName: try c.decodeIfPresent(String.self, forKey: .lastName), username: try c.decodeIfPresent(String.self, forKey: .username),
            languageCode: try c.decodeIfPresent(String.self, forKey: .languageCode))
    }
}

private struct ReferenceChat: Decodable {
    let chat: Chat

    private enum CodingKeys: String, CodingKey { case id, type }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        chat = Chat(id: try c.decode(Int64.self, forKey: .id), type: try c.decode(String.self, forKey: .type))
    }
}
