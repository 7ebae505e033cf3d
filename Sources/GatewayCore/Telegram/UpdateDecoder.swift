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
            do throws(UpdateDecodingError) {
                return .success(try JSONDocument(bytes).update())
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

/// A body whose structure has been checked, read field by field.
private struct JSONDocument {
    private let bytes: UnsafeBufferPointer<UInt8>
    private let root: Int

    init(_ bytes: UnsafeBufferPointer<UInt8>) throws(UpdateDecodingError) {
        self.bytes = bytes
        // A UTF-8 byte order mark is skipped, as JSONDecoder does.
        var start = bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0
        start = JSONBytes.skipSpace(bytes, start)
        root = start
        guard let end = JSONBytes.scan(bytes, from: start), JSONBytes.skipSpace(bytes, end) == bytes.count else { throw .invalidJSON }
    }

    // MARK: The update

    func update() throws(UpdateDecodingError) -> Update {
        guard bytes[root] == UInt8(ascii: "{") else { throw .notAnObject }
        let fields = try object(at: root)
        guard let idAt = fields.value(of: "update_id") else { throw .missingUpdateID }
        let id = try int64(at: idAt, mismatch: .missingUpdateID)
        guard let field = fields.first(besides: "update_id") else {
            return Update(id: id, type: UpdateType(""), content: .other(user: nil, chat: nil))
        }
        let type = UpdateType(field.name)
        if UpdateType.messageTypes.contains(type) {
            return Update(id: id, type: type, content: .message(try message(at: field.value)))
        }
        if type == .callbackQuery {
            return Update(id: id, type: type, content: .callbackQuery(try callbackQuery(at: field.value)))
        }
        // Another type: its parties where the payload has them, anything undecodable absent.
        guard bytes[field.value] == UInt8(ascii: "{"), let parties = try? object(at: field.value) else {
            return Update(id: id, type: type, content: .other(user: nil, chat: nil))
        }
        let user = (try? optional(parties.value(of: "from"), user)) ?? (try? optional(parties.value(of: "user"), user))
        let chat = try? optional(parties.value(of: "chat"), chat)
        return Update(id: id, type: type, content: .other(user: user, chat: chat))
    }

    // The fields are read in the order the Decodable types read them (a synthesized decoder's
    // order is its coding keys'), so that the first error, and so its class, is the same.

    private func message(at index: Int?) throws(UpdateDecodingError) -> Message {
        let fields = try requiredObject(at: index)
        let messageID = try int64(at: fields.value(of: "message_id"))
        let from = try optional(fields.value(of: "from"), user)
        let chat = try chat(at: fields.value(of: "chat"))
        let text = try optional(fields.value(of: "text"), string)
        let entities = try optional(fields.value(of: "entities"), self.entities) ?? []
        return Message(messageID: messageID, from: from, chat: chat, text: text, entities: entities)
    }

    private func entities(at index: Int?) throws(UpdateDecodingError) -> [MessageEntity] {
        guard let index, bytes[index] == UInt8(ascii: "[") else { throw .invalidPayload }
        var entities: [MessageEntity] = []
        var next = JSONBytes.skipSpace(bytes, index + 1)
        while bytes[next] != UInt8(ascii: "]") {
            let fields = try requiredObject(at: next)
            let type = try string(at: fields.value(of: "type"))
            let offset = try int64(at: fields.value(of: "offset"))
            let length = try int64(at: fields.value(of: "length"))
            entities.append(MessageEntity(type: type, offset: Int(offset), length: Int(length)))
            next = afterElement(JSONBytes.skipValue(bytes, next), closing: UInt8(ascii: "]"))
        }
        return entities
    }

    private func callbackQuery(at index: Int?) throws(UpdateDecodingError) -> CallbackQuery {
        let fields = try requiredObject(at: index)
        let id = try string(at: fields.value(of: "id"))
        let from = try user(at: fields.value(of: "from"))
        let message = try optional(fields.value(of: "message"), callbackMessage)
        let data = try optional(fields.value(of: "data"), string)
        let inline = try optional(fields.value(of: "inline_message_id"), string)
        return CallbackQuery(id: id, from: from, message: message, inlineMessageID: inline, data: data)
    }

    private func callbackMessage(at index: Int?) throws(UpdateDecodingError) -> CallbackMessage {
        let fields = try requiredObject(at: index)
        let chat = try chat(at: fields.value(of: "chat"))
        return CallbackMessage(messageID: try int64(at: fields.value(of: "message_id")), chat: chat)
    }

    private func user(at index: Int?) throws(UpdateDecodingError) -> User {
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

    private func chat(at index: Int?) throws(UpdateDecodingError) -> Chat {
        let fields = try requiredObject(at: index)
        let id = try int64(at: fields.value(of: "id"))
        return Chat(id: id, type: try string(at: fields.value(of: "type")))
    }

    // MARK: Values

    /// A field that may be absent or null.
    private func optional<T>(_ index: Int?, _ read: (Int?) throws(UpdateDecodingError) -> T) throws(UpdateDecodingError) -> T? {
        guard let index, bytes[index] != UInt8(ascii: "n") else { return nil }
        return try read(index)
    }

    private func requiredObject(at index: Int?) throws(UpdateDecodingError) -> Fields {
        guard let index, bytes[index] == UInt8(ascii: "{") else { throw .invalidPayload }
        return try object(at: index)
    }

    /// An integer: written as one, or as a number with an exact integer value (`1.0`, `1e2`).
    private func int64(at index: Int?, mismatch: UpdateDecodingError = .invalidPayload) throws(UpdateDecodingError) -> Int64 {
        guard let index else { throw mismatch }
        let first = bytes[index]
        guard first == UInt8(ascii: "-") || JSONBytes.isDigit(first) else { throw mismatch }
        var end = index
        while end < bytes.count, JSONBytes.isNumberByte(bytes[end]) { end += 1 }
        let number = UnsafeBufferPointer(rebasing: bytes[index..<end])
        guard let shape = JSONBytes.numberShape(number) else { throw .invalidJSON }
        if shape == .integer {
            var value: Int64 = 0
            let negative = number[0] == UInt8(ascii: "-")
            for digit in number.dropFirst(negative ? 1 : 0) {
                let (shifted, overflow) = value.multipliedReportingOverflow(by: 10)
                // Accumulated negative, so Int64.min fits.
                let (next, overflow2) = shifted.subtractingReportingOverflow(Int64(digit &- UInt8(ascii: "0")))
                guard !overflow, !overflow2 else { throw .invalidJSON }
                value = next
            }
            if negative { return value }
            guard value != .min else { throw .invalidJSON }
            return -value
        }
        guard let value = JSONBytes.wholeNumber(number) else { throw .invalidJSON }
        return value
    }

    private func bool(at index: Int?) throws(UpdateDecodingError) -> Bool {
        switch index.map({ bytes[$0] }) {
        case UInt8(ascii: "t"): return true
        case UInt8(ascii: "f"): return false
        default: throw .invalidPayload
        }
    }

    private func string(at index: Int?) throws(UpdateDecodingError) -> String {
        guard let index, bytes[index] == UInt8(ascii: "\"") else { throw .invalidPayload }
        guard let string = JSONBytes.decodeString(bytes, at: index) else { throw .invalidJSON }
        return string
    }

    /// An object's fields in document order. Its keys must decode (JSONDecoder reads them all
    /// when it opens an object).
    private func object(at index: Int) throws(UpdateDecodingError) -> Fields {
        var fields = Fields(bytes: bytes)
        var next = JSONBytes.skipSpace(bytes, index + 1)
        while bytes[next] != UInt8(ascii: "}") {
            let keyEnd = JSONBytes.skipString(bytes, next)!
            var name: String?
            if JSONBytes.needsDecoding(bytes, next + 1, keyEnd - 1) {
                guard let decoded = JSONBytes.decodeString(bytes, at: next) else { throw .invalidJSON }
                name = decoded
            }
            let value = JSONBytes.skipSpace(bytes, JSONBytes.skipSpace(bytes, keyEnd) + 1)
            fields.append(key: next + 1..<keyEnd - 1, decoded: name, value: value)
            next = afterElement(JSONBytes.skipValue(bytes, value), closing: UInt8(ascii: "}"))
        }
        return fields
    }

    /// Past a checked container's element and its comma: the next element, or the closing
    /// bracket (a trailing comma passes).
    private func afterElement(_ end: Int, closing: UInt8) -> Int {
        let next = JSONBytes.skipSpace(bytes, end)
        guard bytes[next] == UInt8(ascii: ",") else { return next }
        return JSONBytes.skipSpace(bytes, next + 1)
    }

    /// An object's fields as read: each key's bytes (or its decoded text when it had escapes or
    /// non-ASCII bytes) and where its value starts.
    struct Fields {
        let bytes: UnsafeBufferPointer<UInt8>
        private var keys: [(range: Range<Int>, decoded: String?, value: Int)] = []

        init(bytes: UnsafeBufferPointer<UInt8>) {
            self.bytes = bytes
            // Room for a message's fields at once (grown one doubling at a time it was four
            // allocations and copies per object).
            keys.reserveCapacity(16)
        }

        mutating func append(key: Range<Int>, decoded: String?, value: Int) {
            keys.append((key, decoded, value))
        }

        private func matches(_ key: (range: Range<Int>, decoded: String?, value: Int), _ name: StaticString) -> Bool {
            let wanted = UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
            if let decoded = key.decoded { return decoded.utf8.elementsEqual(wanted) }
            return bytes[key.range].elementsEqual(wanted)
        }

        /// The first field of that name (JSONDecoder's choice among repeated keys).
        func value(of name: StaticString) -> Int? {
            keys.first { matches($0, name) }?.value
        }

        /// The first field of another name: the update's type.
        func first(besides name: StaticString) -> (name: String, value: Int)? {
            guard let key = keys.first(where: { !matches($0, name) }) else { return nil }
            return (key.decoded ?? String(decoding: bytes[key.range], as: UTF8.self), key.value)
        }
    }
}
