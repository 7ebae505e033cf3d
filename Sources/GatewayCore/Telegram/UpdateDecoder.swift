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

    /// As deep as `JSONDecoder` goes.
    private static let maxDepth = 512

    init(_ bytes: UnsafeBufferPointer<UInt8>) throws(UpdateDecodingError) {
        self.bytes = bytes
        // A UTF-8 byte order mark is skipped, as JSONDecoder does.
        var start = bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0
        start = Self.skipSpace(bytes, start)
        root = start
        guard let end = Self.scan(bytes, from: start), Self.skipSpace(bytes, end) == bytes.count else { throw .invalidJSON }
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
        var next = Self.skipSpace(bytes, index + 1)
        while bytes[next] != UInt8(ascii: "]") {
            let fields = try requiredObject(at: next)
            let type = try string(at: fields.value(of: "type"))
            let offset = try int64(at: fields.value(of: "offset"))
            let length = try int64(at: fields.value(of: "length"))
            entities.append(MessageEntity(type: type, offset: Int(offset), length: Int(length)))
            next = afterElement(Self.skipValue(bytes, next), closing: UInt8(ascii: "]"))
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
        guard first == UInt8(ascii: "-") || Self.isDigit(first) else { throw mismatch }
        var end = index
        while end < bytes.count, Self.isNumberByte(bytes[end]) { end += 1 }
        let number = UnsafeBufferPointer(rebasing: bytes[index..<end])
        guard let shape = Self.numberShape(number) else { throw .invalidJSON }
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
        guard let value = Self.wholeNumber(number) else { throw .invalidJSON }
        return value
    }

    /// What JSONDecoder (swift-foundation 6) reads as an Int64 from a number not written as a
    /// plain integer: strtod's Double must be a whole Int64; below 2^53 that is the value, from
    /// there the written digits without their fraction (through a Decimal: the digits that fit
    /// 128 bits, trailing zeros dropped, at most a UInt64 of them).
    private static func wholeNumber(_ number: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard let double = Double(String(decoding: number, as: UTF8.self)), let value = Int64(exactly: double) else { return nil }
        if double.magnitude < 9_007_199_254_740_992 { return value }
        var digits: [UInt8] = []
        var exponent = 0
        var index = number[0] == UInt8(ascii: "-") ? 1 : 0
        var fraction = false
        while index < number.count, number[index] | 0x20 != UInt8(ascii: "e") {
            if number[index] == UInt8(ascii: ".") {
                fraction = true
            } else {
                digits.append(number[index] - UInt8(ascii: "0"))
                if fraction { exponent -= 1 }
            }
            index += 1
        }
        if index < number.count {
            let written = Int(String(decoding: number[(index + 1)...], as: UTF8.self)) ?? 0
            exponent += max(-1_000_000, min(1_000_000, written))
        }
        // The Decimal's mantissa: 128 bits of the leading digits (the rest dropped), without
        // trailing zeros; its value must fit a UInt64.
        var mantissa: UInt128 = 0
        let significant = digits.drop(while: { $0 == 0 })
        for (offset, digit) in significant.enumerated() {
            let (shifted, overflow) = mantissa.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = shifted.addingReportingOverflow(UInt128(digit))
            guard !overflow, !overflow2 else {
                exponent += significant.count - offset
                break
            }
            mantissa = next
        }
        while mantissa != 0, mantissa % 10 == 0 {
            mantissa /= 10
            exponent += 1
        }
        guard var magnitude = UInt64(exactly: mantissa) else { return nil }
        for _ in 0..<abs(exponent) where magnitude != 0 {
            if exponent < 0 {
                magnitude /= 10
            } else {
                let (shifted, overflow) = magnitude.multipliedReportingOverflow(by: 10)
                guard !overflow else { return nil }
                magnitude = shifted
            }
        }
        guard let whole = Int64(exactly: magnitude) else { return nil }
        return number[0] == UInt8(ascii: "-") ? -whole : whole
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
        guard let string = Self.decodeString(bytes, at: index) else { throw .invalidJSON }
        return string
    }

    /// An object's fields in document order. Its keys must decode (JSONDecoder reads them all
    /// when it opens an object).
    private func object(at index: Int) throws(UpdateDecodingError) -> Fields {
        var fields = Fields(bytes: bytes)
        var next = Self.skipSpace(bytes, index + 1)
        while bytes[next] != UInt8(ascii: "}") {
            let keyEnd = Self.skipString(bytes, next)!
            var name: String?
            if Self.needsDecoding(bytes, next + 1, keyEnd - 1) {
                guard let decoded = Self.decodeString(bytes, at: next) else { throw .invalidJSON }
                name = decoded
            }
            let value = Self.skipSpace(bytes, Self.skipSpace(bytes, keyEnd) + 1)
            fields.append(key: next + 1..<keyEnd - 1, decoded: name, value: value)
            next = afterElement(Self.skipValue(bytes, value), closing: UInt8(ascii: "}"))
        }
        return fields
    }

    /// Past a checked container's element and its comma: the next element, or the closing
    /// bracket (a trailing comma passes).
    private func afterElement(_ end: Int, closing: UInt8) -> Int {
        let next = Self.skipSpace(bytes, end)
        guard bytes[next] == UInt8(ascii: ",") else { return next }
        return Self.skipSpace(bytes, next + 1)
    }

    /// An object's fields as read: each key's bytes (or its decoded text when it had escapes or
    /// non-ASCII bytes) and where its value starts.
    struct Fields {
        let bytes: UnsafeBufferPointer<UInt8>
        private var keys: [(range: Range<Int>, decoded: String?, value: Int)] = []

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

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

    // MARK: The structure

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// The bytes JSONDecoder takes as part of a number it skips (it checks a number's form only
    /// when it reads it).
    private static func isNumberByte(_ byte: UInt8) -> Bool {
        isDigit(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e")
            || byte == UInt8(ascii: "E")
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        isDigit(byte) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "f"))
    }

    private static func skipSpace(_ bytes: UnsafeBufferPointer<UInt8>, _ index: Int) -> Int {
        var index = index
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return index
            }
        }
        return index
    }

    /// Past the string starting at `index` (its opening quote): nil when it is not closed.
    /// Escapes, control bytes and UTF-8 are checked only when the string is read.
    private static func skipString(_ bytes: UnsafeBufferPointer<UInt8>, _ index: Int) -> Int? {
        var index = index + 1
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\""):
                return index + 1
            case UInt8(ascii: "\\"):
                guard index + 1 < bytes.count else { return nil }
                guard bytes[index + 1] == UInt8(ascii: "u") else {
                    index += 2
                    continue
                }
                // JSONDecoder skips the four bytes of a `\u` unread, but not a quote among them.
                guard index + 6 <= bytes.count, !bytes[index + 2..<index + 6].contains(UInt8(ascii: "\"")) else { return nil }
                index += 6
            default:
                index += 1
            }
        }
        return nil
    }

    /// Past the value starting at `index`, or nil when the document is malformed there.
    /// Iterative: the nesting costs no stack.
    private static func scan(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: maxDepth) { open in
            var depth = 0
            var index = start
            while true {
                // A value at `index`.
                guard index < bytes.count else { return nil }
                switch bytes[index] {
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    guard depth < maxDepth else { return nil }
                    let opening = bytes[index]
                    let closing = opening == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                    index = skipSpace(bytes, index + 1)
                    guard index < bytes.count else { return nil }
                    if bytes[index] == closing {
                        index += 1
                    } else {
                        open[depth] = opening
                        depth += 1
                        if opening == UInt8(ascii: "{") {
                            guard let next = member(bytes, index) else { return nil }
                            index = next
                        }
                        continue
                    }
                case UInt8(ascii: "\""):
                    guard let end = skipString(bytes, index) else { return nil }
                    index = end
                case UInt8(ascii: "t"):
                    guard literal(bytes, index, "true") else { return nil }
                    index += 4
                case UInt8(ascii: "f"):
                    guard literal(bytes, index, "false") else { return nil }
                    index += 5
                case UInt8(ascii: "n"):
                    guard literal(bytes, index, "null") else { return nil }
                    index += 4
                case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                    index += 1
                    while index < bytes.count, isNumberByte(bytes[index]) { index += 1 }
                default:
                    return nil
                }
                // After a value: a comma and the next element, or the end of containers.
                while true {
                    guard depth > 0 else { return index }
                    index = skipSpace(bytes, index)
                    guard index < bytes.count else { return nil }
                    let inObject = open[depth - 1] == UInt8(ascii: "{")
                    let closing = inObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
                    if bytes[index] == closing {
                        depth -= 1
                        index += 1
                        continue
                    }
                    guard bytes[index] == UInt8(ascii: ",") else { return nil }
                    index = skipSpace(bytes, index + 1)
                    guard index < bytes.count else { return nil }
                    if bytes[index] == closing {  // a trailing comma
                        depth -= 1
                        index += 1
                        continue
                    }
                    if inObject {
                        guard let next = member(bytes, index) else { return nil }
                        index = next
                    }
                    break
                }
            }
        }
    }

    /// A member's key and colon at `index`: where its value starts.
    private static func member(_ bytes: UnsafeBufferPointer<UInt8>, _ index: Int) -> Int? {
        guard bytes[index] == UInt8(ascii: "\""), let keyEnd = skipString(bytes, index) else { return nil }
        let colon = skipSpace(bytes, keyEnd)
        guard colon < bytes.count, bytes[colon] == UInt8(ascii: ":") else { return nil }
        return skipSpace(bytes, colon + 1)
    }

    private static func literal(_ bytes: UnsafeBufferPointer<UInt8>, _ index: Int, _ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        return bytes[index..<index + count].elementsEqual(UnsafeBufferPointer(start: word.utf8Start, count: count))
    }

    /// Past the value at `index` in a checked document.
    private static func skipValue(_ bytes: UnsafeBufferPointer<UInt8>, _ index: Int) -> Int {
        switch bytes[index] {
        case UInt8(ascii: "\""):
            return skipString(bytes, index)!
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            var index = index
            while true {
                switch bytes[index] {
                case UInt8(ascii: "\""):
                    index = skipString(bytes, index)!
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return index + 1 }
                default:
                    break
                }
                index += 1
            }
        case UInt8(ascii: "t"), UInt8(ascii: "n"):
            return index + 4
        case UInt8(ascii: "f"):
            return index + 5
        default:
            var index = index + 1
            while index < bytes.count, isNumberByte(bytes[index]) { index += 1 }
            return index
        }
    }

    private enum NumberShape { case integer, decimal }

    /// JSON's number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    private static func numberShape(_ number: UnsafeBufferPointer<UInt8>) -> NumberShape? {
        var index = 0
        if index < number.count, number[index] == UInt8(ascii: "-") { index += 1 }
        guard index < number.count, isDigit(number[index]) else { return nil }
        if number[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while index < number.count, isDigit(number[index]) { index += 1 }
        }
        var shape = NumberShape.integer
        if index < number.count, number[index] == UInt8(ascii: ".") {
            index += 1
            guard index < number.count, isDigit(number[index]) else { return nil }
            while index < number.count, isDigit(number[index]) { index += 1 }
            shape = .decimal
        }
        if index < number.count, number[index] | 0x20 == UInt8(ascii: "e") {
            index += 1
            if index < number.count, number[index] == UInt8(ascii: "+") || number[index] == UInt8(ascii: "-") { index += 1 }
            guard index < number.count, isDigit(number[index]) else { return nil }
            while index < number.count, isDigit(number[index]) { index += 1 }
            shape = .decimal
        }
        return index == number.count ? shape : nil
    }

    /// Whether a string's bytes hold an escape, a control byte or non-ASCII (to be decoded).
    private static func needsDecoding(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        bytes[start..<end].contains { $0 == UInt8(ascii: "\\") || $0 < 0x20 || $0 >= 0x80 }
    }

    /// The text of the string starting at `index`: nil for a control byte, an unknown escape, a
    /// lone surrogate or bytes that are not UTF-8.
    private static func decodeString(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> String? {
        let end = skipString(bytes, index)! - 1
        let start = index + 1
        let raw = UnsafeBufferPointer(rebasing: bytes[start..<end])
        guard raw.contains(UInt8(ascii: "\\")) else {
            guard !raw.contains(where: { $0 < 0x20 }) else { return nil }
            return String(validating: raw, as: UTF8.self)
        }
        var utf8: [UInt8] = []
        utf8.reserveCapacity(raw.count)
        var position = 0
        func hex(_ at: Int) -> UInt32? {
            guard at + 4 <= raw.count else { return nil }
            var value: UInt32 = 0
            for byte in raw[at..<at + 4] {
                guard isHexDigit(byte) else { return nil }
                let digit = byte <= UInt8(ascii: "9") ? byte - UInt8(ascii: "0") : (byte | 0x20) - UInt8(ascii: "a") + 10
                value = value << 4 | UInt32(digit)
            }
            return value
        }
        while position < raw.count {
            let byte = raw[position]
            guard byte >= 0x20 else { return nil }
            guard byte == UInt8(ascii: "\\") else {
                utf8.append(byte)
                position += 1
                continue
            }
            let escape = raw[position + 1]
            position += 2
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                guard var scalar = hex(position) else { return nil }
                position += 4
                if (0xD800...0xDBFF).contains(scalar) {
                    // A high surrogate must be followed by an escaped low one.
                    guard position + 6 <= raw.count, raw[position] == UInt8(ascii: "\\"), raw[position + 1] == UInt8(ascii: "u") else { return nil }
                    guard let low = hex(position + 2), (0xDC00...0xDFFF).contains(low) else { return nil }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    position += 6
                }
                guard let unicode = Unicode.Scalar(scalar) else { return nil }
                utf8.append(contentsOf: UTF8.encode(unicode)!)
            default:
                return nil
            }
        }
        return String(validating: utf8, as: UTF8.self)
    }
}
