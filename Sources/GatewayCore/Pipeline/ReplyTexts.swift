/// What the gateway itself says to users, where no service speaks.
public struct ReplyTexts: Sendable, Equatable {
    public var unknownCommand: String
    public var unknownCallback: String
    public var rateLimited: String
    public var serviceFailure: String

    public init(unknownCommand: String, unknownCallback: String, rateLimited: String, serviceFailure: String) {
        self.unknownCommand = unknownCommand
        self.unknownCallback = unknownCallback
        self.rateLimited = rateLimited
        self.serviceFailure = serviceFailure
    }

    public static let standard = ReplyTexts(
        unknownCommand: "Sorry, I don't know that command. Send /help to see what I can do.",
        unknownCallback: "This button is no longer available.",
        rateLimited: "You're sending messages too fast, please slow down 🙂",
        serviceFailure: "Something went wrong on our side. Please try again in a minute."
    )
}
