/// A bot command at the start of a message: `/start payload`, `/help@SomeBot` in groups.
///
/// Telegram's rules: a command is `/` followed by 1–32 Latin letters, digits or underscores,
/// optionally `@` and a bot username, then whitespace or the end of the text. The name is
/// matched case-insensitively and stored lowercased; the arguments are the rest of the text
/// after the whitespace that follows the command.
public struct BotCommand: Sendable, Equatable {
    /// The command without its slash, lowercased: `start`.
    public let name: String
    /// The bot the command is addressed to (`SomeBot` in `/help@SomeBot`), if any.
    public let mention: String?
    /// Everything after the command and the whitespace that follows it; may be empty.
    public let arguments: String

    public static let maxNameLength = 32

    public init(name: String, mention: String? = nil, arguments: String = "") {
        self.name = name
        self.mention = mention
        self.arguments = arguments
    }

    /// Parses the command at the start of `text`, or returns `nil` if the text does not start with one.
    ///
    /// When the message carries entities, an entity at offset 0 must be a `bot_command`: a `/start`
    /// shown as code, for instance, is not a command.
    public init?(text: String, entities: [MessageEntity] = []) {
        if let first = entities.first(where: { $0.offset == 0 }), first.type != "bot_command" { return nil }
        // The command is ASCII, read from the text's bytes; only what follows it may need
        // Unicode (the whitespace that ends it).
        var text = text
        guard let (name, mention, end) = text.withUTF8(Self.command(in:)) else { return nil }
        // The command ends at whitespace or at the end of the text: `/start-now` is no command.
        let scalars = text.unicodeScalars
        var index = text.utf8.index(text.utf8.startIndex, offsetBy: end)
        if index < scalars.endIndex {
            guard Self.isWhitespace(scalars[index]) else { return nil }
            while index < scalars.endIndex, Self.isWhitespace(scalars[index]) { index = scalars.index(after: index) }
        }
        self.init(name: name, mention: mention, arguments: String(scalars[index...]))
    }

    /// The lowercased name and the mention of the command `text` starts with, and the offset of
    /// the byte after them; nil when it starts with none.
    private static func command(in text: UnsafeBufferPointer<UInt8>) -> (name: String, mention: String?, end: Int)? {
        guard text.first == UInt8(ascii: "/") else { return nil }
        var index = 1
        while index < text.count, isCommandByte(text[index]) { index += 1 }
        let nameLength = index - 1
        guard nameLength >= 1, nameLength <= maxNameLength else { return nil }
        let name = String(unsafeUninitializedCapacity: nameLength) { name in
            for offset in 0..<nameLength {
                let byte = text[1 + offset]
                name[offset] = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
            }
            return nameLength
        }
        var mention: String?
        if index < text.count, text[index] == UInt8(ascii: "@") {
            let mentionStart = index + 1
            index = mentionStart
            while index < text.count, isCommandByte(text[index]) { index += 1 }
            guard index > mentionStart else { return nil }
            mention = String(decoding: UnsafeBufferPointer(rebasing: text[mentionStart..<index]), as: UTF8.self)
        }
        return (name, mention, index)
    }

    /// Whether the command is meant for the bot called `botUsername` (compared without case).
    /// A command with no mention is for every bot in the chat; without a configured username,
    /// every mention is taken as ours.
    public func isAddressed(to botUsername: String?) -> Bool {
        guard let mention, let botUsername else { return true }
        return mention.lowercased() == botUsername.lowercased()
    }

    private static func isCommandByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "_"):
            true
        default: false
        }
    }

    /// Unicode's White_Space, without its property lookup for ASCII.
    private static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.isASCII ? scalar == " " || (0x09...0x0D).contains(scalar.value) : scalar.properties.isWhitespace
    }
}
