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
            writer.object("user") { writer in
                writer.field("id", user.id)
                if let username = user.username { writer.field("username", username) }
                writer.field("first_name", user.firstName)
                if let language = user.languageCode { writer.field("language_code", language) }
            }
        }
        if let chat = update.chat {
            writer.object("chat") { writer in
                writer.field("id", chat.id)
                writer.field("type", chat.type)
            }
        }
        writer.field("session_available", session != nil)
        if let session {
            writer.field("internal_user_id", session.internalUserID)
            writer.field("new_session", session.isNew)
            writer.field("conversation_state", json: (session.conversationState ?? "null").utf8)
        } else {
            writer.field("internal_user_id", json: "null".utf8)
            writer.field("conversation_state", json: "null".utf8)
        }
        switch route {
        case .command(let command, _):
            writer.object("command") { writer in
                writer.field("name", command.name)
                writer.field("arguments", command.arguments)
            }
        case .callback:
            if case .callbackQuery(let query) = update.content {
                writer.object("callback") { writer in
                    writer.field("id", query.id)
                    writer.field("data", query.data ?? "")
                    if let message = query.message { writer.field("message_id", message.messageID) }
                    if let inline = query.inlineMessageID { writer.field("inline_message_id", inline) }
                }
            }
        case .text:
            if case .message(let message) = update.content, let text = message.text { writer.field("text", text) }
        case .unknownCommand, .unknownCallback, .ignored:
            break
        }
        return writer.finish()
    }
}
