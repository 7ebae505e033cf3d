/// Turns a webhook body into an `Update`, or says why it cannot, reading the few fields the
/// gateway uses straight from the bytes: no Foundation, no tree of the document, one pass to
/// check its structure and one to read what it needs.
///
/// Any byte sequence is a valid input: the result is an update or an `UpdateDecodingError`.
/// What it accepts and refuses is what Foundation's `JSONDecoder` did before it (checked by the
/// `decoder-diff` fuzz target and the unit tests against that decoder, kept in the test
/// support): the whole document's structure is checked (brackets, commas, strings closed,
/// `\u` escapes, literals, at most 512 levels of nesting), while a number, a string's other
/// escapes and its UTF-8 are checked where a field is read; a trailing comma passes; of a
/// repeated key the first counts. The update's type is its first field besides `update_id`.
public struct UpdateDecoder: Sendable {
    public init() {}

    public func decode(_ body: [UInt8]) -> Result<Update, UpdateDecodingError> {
        if body.isEmpty { return .failure(.emptyBody) }
        return body.withUnsafeBufferPointer { bytes in
            guard let document = try? JSONDocument(bytes) else { return .failure(.invalidJSON) }
            do throws(UpdateDecodingError) {
                return .success(try document.update())
            } catch {
                return .failure(error)
            }
        }
    }
}

/// Why a webhook body is not an update. `shortDescription` is safe for logs: it never holds
/// a byte of the body.
public struct UpdateDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Code: String, Sendable {
        case emptyBody = "empty_body"
        case invalidJSON = "invalid_json"
        case notAnObject = "not_an_object"
        case missingUpdateID = "missing_update_id"
        case invalidPayload = "invalid_payload"
    }

    private let code: Code

    public static let emptyBody = UpdateDecodingError(code: .emptyBody)
    /// Not JSON, or a field the gateway reads holds a malformed number or string.
    public static let invalidJSON = UpdateDecodingError(code: .invalidJSON)
    public static let notAnObject = UpdateDecodingError(code: .notAnObject)
    public static let missingUpdateID = UpdateDecodingError(code: .missingUpdateID)
    /// A field the gateway needs is missing or of another type.
    public static let invalidPayload = UpdateDecodingError(code: .invalidPayload)

    private init(code: Code) { self.code = code }

    public var shortDescription: String { code.rawValue }
    public var description: String { shortDescription }
}

/// The update's fields, read in the order the Decodable types read them (a synthesized
/// decoder's order is its coding keys'), so that the first error, and so its class, is the same.
extension JSONDocument {
    fileprivate func update() throws(UpdateDecodingError) -> Update {
        guard bytes[root] == UInt8(ascii: "{") else { throw .notAnObject }
        let fields: Fields
        let id: Int64
        do throws(ReadError) {
            fields = try object(at: root)
            guard let idAt = fields.value(of: "update_id") else { throw .mismatch }
            id = try int64(at: idAt)
        } catch {
            throw error == .malformed ? .invalidJSON : .missingUpdateID
        }
        guard let field = fields.first(besides: "update_id") else {
            return Update(id: id, type: UpdateType(""), content: .other(user: nil, chat: nil))
        }
        let type = UpdateType(field.name)
        do throws(ReadError) {
            if UpdateType.messageTypes.contains(type) {
                return Update(id: id, type: type, content: .message(try message(at: field.value)))
            }
            if type == .callbackQuery {
                return Update(id: id, type: type, content: .callbackQuery(try callbackQuery(at: field.value)))
            }
        } catch {
            throw error == .malformed ? .invalidJSON : .invalidPayload
        }
        // Another type: its parties where the payload has them, anything undecodable absent.
        guard bytes[field.value] == UInt8(ascii: "{"), let parties = try? object(at: field.value) else {
            return Update(id: id, type: type, content: .other(user: nil, chat: nil))
        }
        let user = (try? optional(parties.value(of: "from"), user)) ?? (try? optional(parties.value(of: "user"), user))
        let chat = try? optional(parties.value(of: "chat"), chat)
        return Update(id: id, type: type, content: .other(user: user, chat: chat))
    }

    private func message(at index: Int?) throws(ReadError) -> Message {
        let fields = try requiredObject(at: index)
        let messageID = try int64(at: fields.value(of: "message_id"))
        let from = try optional(fields.value(of: "from"), user)
        let chat = try chat(at: fields.value(of: "chat"))
        let text = try optional(fields.value(of: "text"), string)
        let entities = try optional(fields.value(of: "entities"), self.entities) ?? []
        return Message(messageID: messageID, from: from, chat: chat, text: text, entities: entities)
    }

    private func entities(at index: Int?) throws(ReadError) -> [MessageEntity] {
        var entities: [MessageEntity] = []
        for element in try elements(at: index) {
            let fields = try requiredObject(at: element)
            let type = try string(at: fields.value(of: "type"))
            let offset = try int64(at: fields.value(of: "offset"))
            let length = try int64(at: fields.value(of: "length"))
            entities.append(MessageEntity(type: type, offset: Int(offset), length: Int(length)))
        }
        return entities
    }

    private func callbackQuery(at index: Int?) throws(ReadError) -> CallbackQuery {
        let fields = try requiredObject(at: index)
        let id = try string(at: fields.value(of: "id"))
        let from = try user(at: fields.value(of: "from"))
        let message = try optional(fields.value(of: "message"), callbackMessage)
        let data = try optional(fields.value(of: "data"), string)
        let inline = try optional(fields.value(of: "inline_message_id"), string)
        return CallbackQuery(id: id, from: from, message: message, inlineMessageID: inline, data: data)
    }

    private func callbackMessage(at index: Int?) throws(ReadError) -> CallbackMessage {
        let fields = try requiredObject(at: index)
        let chat = try chat(at: fields.value(of: "chat"))
        return CallbackMessage(messageID: try int64(at: fields.value(of: "message_id")), chat: chat)
    }

    private func user(at index: Int?) throws(ReadError) -> User {
        let fields = try requiredObject(at: index)
        let id = try int64(at: fields.value(of: "id"))
        // Telegram always sends both, but a missing flag or name is no reason to drop an update.
        let isBot = try optional(fields.value(of: "is_bot"), bool) ?? false
        let firstName = try optional(fields.value(of: "first_name"), string) ?? ""
        let lastName = try optional(fields.value(of: "last_name"), string)
        let username = try optional(fields.value(of: "username"), string)
        let languageCode = try optional(fields.value(of: "language_code"), string)
        return User(id: id, isBot: isBot, firstName: firstName, lastName: lastName, username: username, languageCode: languageCode)
    }

    private func chat(at index: Int?) throws(ReadError) -> Chat {
        let fields = try requiredObject(at: index)
        let id = try int64(at: fields.value(of: "id"))
        return Chat(id: id, type: try string(at: fields.value(of: "type")))
    }
}
