/// Keeps the whole pool inside Telegram's sending limits: about 1 message a second per chat
/// (a short burst allowed), 20 a minute per group, about 30 a second per bot. The budget is
/// shared by every thread and host, so it lives in the state store.
public protocol OutgoingLimiter {
    /// Waits, within the limiter's bound, until a message may go to `chatID`. False: the wait
    /// would be too long, so the message is not sent (it would only earn a 429).
    func awaitSlot(chatID: Int64, throughBotAPI: Bool) -> Bool
}

/// The limits, from configuration.
public struct OutgoingLimits: Sendable, Equatable {
    /// Messages per `privateWindowMilliseconds` to one private chat.
    public var privateChatMessages: Int
    public var privateWindowMilliseconds: Int64
    /// Messages per `groupWindowMilliseconds` to one group or channel.
    public var groupMessages: Int
    public var groupWindowMilliseconds: Int64
    /// Messages a second through the Bot API for the whole bot; 0 turns the global budget off.
    public var botMessagesPerSecond: Int
    /// The longest a message waits for its slot before it is given up.
    public var maxWaitMilliseconds: Int64

    public init(
        privateChatMessages: Int = 3, privateWindowMilliseconds: Int64 = 3000, groupMessages: Int = 20,
        groupWindowMilliseconds: Int64 = 60_000, botMessagesPerSecond: Int = 30, maxWaitMilliseconds: Int64 = 2000
    ) {
        self.privateChatMessages = privateChatMessages
        self.privateWindowMilliseconds = privateWindowMilliseconds
        self.groupMessages = groupMessages
        self.groupWindowMilliseconds = groupWindowMilliseconds
        self.botMessagesPerSecond = botMessagesPerSecond
        self.maxWaitMilliseconds = maxWaitMilliseconds
    }
}

/// A limiter that never waits: for tests of other things.
public struct UnlimitedOutgoing: OutgoingLimiter {
    public init() {}
    public func awaitSlot(chatID: Int64, throughBotAPI: Bool) -> Bool { true }
}
