/// Keeps the whole pool inside Telegram's sending limits: about 1 message a second per chat
/// (a short burst allowed), 20 a minute per group, about 30 a second per bot. The budget is
/// shared by every thread and host, so it lives in the state store.
public protocol OutgoingLimiter {
    /// Reserves a slot for a new message to `chatID` at most `maxWaitMilliseconds` from now and
    /// returns how long to wait for it (0: now); nil when no slot is free that soon, and then
    /// nothing is reserved. `throughBotAPI` also counts it against the bot-wide budget (a
    /// webhook reply is sent by Telegram itself). A failing store answers 0: Telegram's own
    /// limit is then the judge.
    func reserve(chatID: Int64, throughBotAPI: Bool, maxWaitMilliseconds: Int64, deadline: Deadline) -> Int64?

    /// Reserves a Bot API send in the bot-wide budget (and after a 429's pause) only, no earlier
    /// than `afterMilliseconds` from now: for a call whose chat's slot is already reserved.
    func reserveBotAPI(afterMilliseconds: Int64, maxWaitMilliseconds: Int64, deadline: Deadline) -> Int64?

    /// Telegram answered 429: no Bot API send of the whole pool goes out for this long (the
    /// bot-wide budget's reservations start after it). Best effort.
    func pause(milliseconds: Int64, deadline: Deadline)

    /// How long the pool's sends are still paused for (0: not paused): checked again by a
    /// sender that waited for its slot, since a 429 may have come in the meantime. A failing
    /// store answers 0.
    func pausedMilliseconds(deadline: Deadline) -> Int64

    /// Whether Bot API sends take slots in a bot-wide budget (`OUTGOING_PER_SECOND` above 0):
    /// only then must a send leave close to its slot.
    var hasBotBudget: Bool { get }
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

    public init(
        privateChatMessages: Int = 3, privateWindowMilliseconds: Int64 = 3000, groupMessages: Int = 20,
        groupWindowMilliseconds: Int64 = 60_000, botMessagesPerSecond: Int = 30
    ) {
        self.privateChatMessages = privateChatMessages
        self.privateWindowMilliseconds = privateWindowMilliseconds
        self.groupMessages = groupMessages
        self.groupWindowMilliseconds = groupWindowMilliseconds
        self.botMessagesPerSecond = botMessagesPerSecond
    }

    /// The bot-wide budget's window: `botMessagesPerSecond` sends per 1.05 s. Sends leave a
    /// little after their reserved times (a thread's wake-up, the request on its way); counting
    /// them over 1.05 s keeps any second as Telegram counts it within the budget for sends up
    /// to 50 ms late, for 5 % of the throughput.
    public static let botWindowMilliseconds: Int64 = 1050

    /// How late after its slot a worker may still send: later, it takes a new slot.
    /// Half the window's margin (50 ms) late at most, so the other half is left for the request
    /// on its way.
    public static let lateSendMilliseconds: Int64 = 20

    /// Senders that may wait (workers: outboxes, broadcasts) spread the bot's sends evenly, this
    /// far apart (35 ms at 30 a second), rather than a window's worth at once: Telegram sees a
    /// steady rate, and a late send shifts only itself. The webhook path's sends, which never
    /// wait, go whenever the window has room.
    public var botSpacingMilliseconds: Int64 {
        botMessagesPerSecond > 0 ? Self.botWindowMilliseconds / Int64(botMessagesPerSecond) : 0
    }

    /// The window of `chatID`: groups, supergroups and channels have negative ids.
    public func window(of chatID: Int64) -> (messages: Int, milliseconds: Int64) {
        chatID < 0 ? (groupMessages, groupWindowMilliseconds) : (privateChatMessages, privateWindowMilliseconds)
    }
}

/// A limiter that never waits: for tests of other things.
public struct UnlimitedOutgoing: OutgoingLimiter {
    public init() {}
    public func reserve(chatID: Int64, throughBotAPI: Bool, maxWaitMilliseconds: Int64, deadline: Deadline) -> Int64? { 0 }
    public func reserveBotAPI(afterMilliseconds: Int64, maxWaitMilliseconds: Int64, deadline: Deadline) -> Int64? { afterMilliseconds }
    public func pause(milliseconds: Int64, deadline: Deadline) {}
    public func pausedMilliseconds(deadline: Deadline) -> Int64 { 0 }
    public var hasBotBudget: Bool { false }
}
