/// Decides where each update goes, from tables rather than code: commands, callback data
/// prefixes, and one destination for plain text.
///
/// Callback data is matched on its prefix: the part before the first `:` (`CONNECT:42` →
/// `CONNECT`), or the whole data when it has no `:`. Prefixes are case-sensitive; command names
/// are matched lowercased, as `BotCommand` stores them.
public struct RouteTable: Sendable, Equatable {
    public var commands: [String: RouteTarget]
    public var callbackPrefixes: [String: RouteTarget]
    /// Where plain text goes; `nil` ignores text.
    public var text: RouteTarget?
    /// What Telegram's command menu says of a command (`gatewayctl set-commands`); a command
    /// without one is routed but not listed.
    public var descriptions: [String: String]

    public init(
        commands: [String: RouteTarget], callbackPrefixes: [String: RouteTarget], text: RouteTarget?, descriptions: [String: String] = [:]
    ) {
        self.commands = commands
        self.callbackPrefixes = callbackPrefixes
        self.text = text
        self.descriptions = descriptions
    }

    /// The commands for setMyCommands, in name order: those with a description.
    public var menu: [(command: String, description: String)] {
        commands.keys.sorted().compactMap { name in descriptions[name].map { (name, $0) } }
    }

    /// The gateway's default table.
    public static let standard = RouteTable(
        commands: [
            "start": .service(.userProfile),
            "help": .service(.userProfile),
            "profile": .service(.userProfile),
        ],
        callbackPrefixes: [
            "CONNECT": .service(.matching),
            "ACCEPT": .service(.matching),
            "REJECT": .service(.matching),
            "SKIP": .service(.matching),
            "CONFIRM": .generic,
            "CANCEL": .generic,
        ],
        text: .service(.conversation),
        descriptions: [
            "start": "Start the bot",
            "help": "What the bot can do",
            "profile": "Your profile",
        ]
    )

    /// Routes `update`. `botUsername` (without `@`) lets group commands addressed to another
    /// bot be ignored; without it every command is taken as ours.
    public func route(_ update: Update, botUsername: String? = nil) -> Route {
        switch update.content {
        case .message(let message) where update.type == .message:
            if message.from?.isBot == true { return .ignored(.fromBot) }
            guard let text = message.text else { return .ignored(.noText) }
            if let command = BotCommand(text: text, entities: message.entities) {
                guard command.isAddressed(to: botUsername) else { return .ignored(.otherBot) }
                guard let target = commands[command.name] else { return .unknownCommand(command) }
                return .command(command, target)
            }
            guard let target = self.text else { return .ignored(.unroutedType) }
            return .text(target)
        case .callbackQuery(let query):
            guard let data = query.data else { return .unknownCallback }
            let prefix = Self.prefix(ofCallbackData: data)
            guard let target = callbackPrefixes[prefix] else { return .unknownCallback }
            return .callback(prefix: prefix, target)
        default:
            return .ignored(.unroutedType)
        }
    }

    /// The routing prefix of callback data: the text before the first `:`.
    public static func prefix(ofCallbackData data: String) -> String {
        if let colon = data.firstIndex(of: ":") { return String(data[..<colon]) }
        return data
    }
}
