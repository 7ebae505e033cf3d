import GatewayCore

/// The bot command parser the gateway had before it read the command's bytes: Telegram's
/// rules over the text's Unicode scalars. Kept only as the reference the gateway's parser is
/// checked against (the `command` fuzz target, the parser's unit tests): the same command, or
/// none.
public enum ReferenceBotCommand {
    public static func parse(_ text: String, entities: [MessageEntity] = []) -> BotCommand? {
        if let first = entities.first(where: { $0.offset == 0 }), first.type != "bot_command" { return nil }
        let scalars = text.unicodeScalars
        guard scalars.first == "/" else { return nil }
        var index = scalars.index(after: scalars.startIndex)

        let nameStart = index
        while index < scalars.endIndex, isCommandCharacter(scalars[index]) { index = scalars.index(after: index) }
        let nameLength = scalars.distance(from: nameStart, to: index)
        guard nameLength >= 1, nameLength <= BotCommand.maxNameLength else { return nil }
        let name = String(scalars[nameStart..<index]).lowercased()

        var mention: String?
        if index < scalars.endIndex, scalars[index] == "@" {
            let mentionStart = scalars.index(after: index)
            index = mentionStart
            while index < scalars.endIndex, isCommandCharacter(scalars[index]) { index = scalars.index(after: index) }
            guard index > mentionStart else { return nil }
            mention = String(scalars[mentionStart..<index])
        }

        if index < scalars.endIndex {
            guard scalars[index].properties.isWhitespace else { return nil }
            while index < scalars.endIndex, scalars[index].properties.isWhitespace { index = scalars.index(after: index) }
        }
        return BotCommand(name: name, mention: mention, arguments: String(scalars[index...]))
    }

    private static func isCommandCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9", "_": true
        default: false
        }
    }
}
