/// The kind of an update: the name of the one optional field Telegram sets besides `update_id`.
///
/// Kept open: a type Telegram adds tomorrow decodes as an unknown type, never as an error.
public struct UpdateType: Hashable, Sendable, CustomStringConvertible {
    /// The field name as Telegram sends it, e.g. `callback_query`.
    public let rawValue: String

    public init(_ rawValue: String) {
        self.rawValue = rawValue
    }

    public static let message = UpdateType("message")
    public static let editedMessage = UpdateType("edited_message")
    public static let channelPost = UpdateType("channel_post")
    public static let editedChannelPost = UpdateType("edited_channel_post")
    public static let businessConnection = UpdateType("business_connection")
    public static let businessMessage = UpdateType("business_message")
    public static let editedBusinessMessage = UpdateType("edited_business_message")
    public static let deletedBusinessMessages = UpdateType("deleted_business_messages")
    public static let messageReaction = UpdateType("message_reaction")
    public static let messageReactionCount = UpdateType("message_reaction_count")
    public static let inlineQuery = UpdateType("inline_query")
    public static let chosenInlineResult = UpdateType("chosen_inline_result")
    public static let callbackQuery = UpdateType("callback_query")
    public static let shippingQuery = UpdateType("shipping_query")
    public static let preCheckoutQuery = UpdateType("pre_checkout_query")
    public static let purchasedPaidMedia = UpdateType("purchased_paid_media")
    public static let poll = UpdateType("poll")
    public static let pollAnswer = UpdateType("poll_answer")
    public static let myChatMember = UpdateType("my_chat_member")
    public static let chatMember = UpdateType("chat_member")
    public static let chatJoinRequest = UpdateType("chat_join_request")
    public static let chatBoost = UpdateType("chat_boost")
    public static let removedChatBoost = UpdateType("removed_chat_boost")

    /// Every type the Bot API documents today.
    public static let known: Set<UpdateType> = [
        .message, .editedMessage, .channelPost, .editedChannelPost, .businessConnection,
        .businessMessage, .editedBusinessMessage, .deletedBusinessMessages, .messageReaction,
        .messageReactionCount, .inlineQuery, .chosenInlineResult, .callbackQuery, .shippingQuery,
        .preCheckoutQuery, .purchasedPaidMedia, .poll, .pollAnswer, .myChatMember, .chatMember,
        .chatJoinRequest, .chatBoost, .removedChatBoost,
    ]

    /// Types whose payload is a `Message`.
    static let messageTypes: Set<UpdateType> = [
        .message, .editedMessage, .channelPost, .editedChannelPost, .businessMessage, .editedBusinessMessage,
    ]

    public var isKnown: Bool { Self.known.contains(self) }

    /// A name safe for logs and metric labels: the wire name of a known type, else `unknown`
    /// (an unknown field name comes from the network and could be anything).
    public var description: String { isKnown ? rawValue : "unknown" }
}
