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
        let scalars = text.unicodeScalars
        guard scalars.first == "/" else { return nil }
        var index = scalars.index(after: scalars.startIndex)

        let nameStart = index
        while index < scalars.endIndex, Self.isCommandCharacter(scalars[index]) { index = scalars.index(after: index) }
        let nameLength = scalars.distance(from: nameStart, to: index)
        guard nameLength >= 1, nameLength <= Self.maxNameLength else { return nil }
        let name = String(scalars[nameStart..<index]).lowercased()

        var mention: String?
        if index < scalars.endIndex, scalars[index] == "@" {
            let mentionStart = scalars.index(after: index)
            index = mentionStart
            while index < scalars.endIndex, Self.isCommandCharacter(scalars[index]) { index = scalars.index(after: index) }
            guard index > mentionStart else { return nil }
            mention = String(scalars[mentionStart..<index])
        }

        // The command ends at whitespace or at the end of the text: `/start-now` is no command.
        if index < scalars.endIndex {
            guard scalars[index].properties.isWhitespace else { return nil }
            while index < scalars.endIndex, scalars[index].properties.isWhitespace { index = scalars.index(after: index) }
        }
        self.init(name: name, mention: mention, arguments: String(scalars[index...]))
    }

    /// Whether the command is meant for the bot called `botUsername` (compared without case).
    /// A command with no mention is for every bot in the chat; without a configured username,
    /// every mention is taken as ours.
    public func isAddressed(to botUsername: String?) -> Bool {
        guard let mention, let botUsername else { return true }
        return mention.lowercased() == botUsername.lowercased()
    }

    private static func isCommandCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9", "_": true
        default: false
        }
    }
}
