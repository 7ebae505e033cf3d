/// Where an update goes: the decision the route table makes for one update.
public enum Route: Sendable, Equatable {
    /// A command (`/start`) with a destination in the table.
    case command(BotCommand, RouteTarget)
    /// A button press whose callback data's prefix has a destination in the table.
    case callback(prefix: String, RouteTarget)
    /// Plain text in a message.
    case text(RouteTarget)
    /// A command the table does not know: the user is told so.
    case unknownCommand(BotCommand)
    /// A button press the table does not know: the callback is answered with an error.
    case unknownCallback
    /// Nothing to do for this update (a channel post, a reaction, a command for another bot…).
    case ignored(IgnoreReason)

    public enum IgnoreReason: String, Sendable {
        case unroutedType = "unrouted_type"
        case noText = "no_text"
        case fromBot = "from_bot"
        case otherBot = "command_for_other_bot"
    }

    /// Where the update is sent, if anywhere.
    public var target: RouteTarget? {
        switch self {
        case .command(_, let target), .callback(_, let target), .text(let target): target
        case .unknownCommand, .unknownCallback, .ignored: nil
        }
    }

    /// Whether the update goes to a service, which reads and may change the user's session.
    public var needsSession: Bool {
        if case .service = target { return true }
        return false
    }

    /// A bounded label for logs and metrics: `user_profile`, `generic`, `unknown_command`, `ignored`.
    public var label: String {
        switch self {
        case .command(_, let target), .callback(_, let target), .text(let target): target.description
        case .unknownCommand: "unknown_command"
        case .unknownCallback: "unknown_callback"
        case .ignored: "ignored"
        }
    }
}

/// The destination of a route table entry.
public enum RouteTarget: Hashable, Sendable, CustomStringConvertible {
    /// An internal HTTP service.
    case service(ServiceName)
    /// The gateway's own generic handler (confirm/cancel buttons): no service involved.
    case generic

    public var description: String {
        switch self {
        case .service(let name): name.rawValue
        case .generic: "generic"
        }
    }
}
