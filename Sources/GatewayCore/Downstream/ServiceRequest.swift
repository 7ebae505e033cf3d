/// The one request shape every service receives (see the Service Contracts article).
public struct ServiceRequest: Sendable {
    public let requestID: String
    public let update: Update
    public let route: Route
    public let session: Session?

    public init(requestID: String, update: Update, route: Route, session: Session?) {
        self.requestID = requestID
        self.update = update
        self.route = route
        self.session = session
    }

    /// The JSON body POSTed to the service.
    public var body: [UInt8] {
        var writer = JSONWriter(capacity: 512)
        writer.field("request_id", requestID)
        writer.field("update_id", update.id)
        writer.field("update_type", update.type.rawValue)
        if let user = update.user {
            var userWriter = JSONWriter(capacity: 128)
            userWriter.field("id", user.id)
            if let username = user.username { userWriter.field("username", username) }
            userWriter.field("first_name", user.firstName)
            if let language = user.languageCode { userWriter.field("language_code", language) }
            writer.field("user", json: userWriter.finish())
        }
        if let chat = update.chat {
            var chatWriter = JSONWriter(capacity: 64)
            chatWriter.field("id", chat.id)
            chatWriter.field("type", chat.type)
            writer.field("chat", json: chatWriter.finish())
        }
        writer.field("session_available", session != nil)
        if let session {
            writer.field("internal_user_id", session.internalUserID)
            writer.field("new_session", session.isNew)
            writer.field("conversation_state", json: Array((session.conversationState ?? "null").utf8))
        } else {
            writer.field("internal_user_id", json: Array("null".utf8))
            writer.field("conversation_state", json: Array("null".utf8))
        }
        switch route {
        case .command(let command, _):
            var commandWriter = JSONWriter(capacity: 64)
            commandWriter.field("name", command.name)
            commandWriter.field("arguments", command.arguments)
            writer.field("command", json: commandWriter.finish())
        case .callback:
            if case .callbackQuery(let query) = update.content {
                var callback = JSONWriter(capacity: 128)
                callback.field("id", query.id)
                callback.field("data", query.data ?? "")
                if let message = query.message { callback.field("message_id", message.messageID) }
                if let inline = query.inlineMessageID { callback.field("inline_message_id", inline) }
                writer.field("callback", json: callback.finish())
            }
        case .text:
            if case .message(let message) = update.content, let text = message.text { writer.field("text", text) }
        case .unknownCommand, .unknownCallback, .ignored:
            break
        }
        return writer.finish()
    }
}
