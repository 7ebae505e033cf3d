import Logging

/// Decode: the body becomes an update (or a typed reason it is none), long callback data is
/// read back from its token, and the update is routed.
extension UpdateProcessor {
    enum Decoded {
        case update(Update, Route)
        /// Not an update: acknowledged on the webhook path (Telegram would resend it forever),
        /// dropped by a worker (nothing else writes to the streams).
        case malformed(UpdateDecodingError)
        /// A button with long data whose token the store could not read back now.
        case unresolved
    }

    func decode(_ body: [UInt8], state: any StateStore, context: inout UpdateContext) -> Decoded {
        let decoded: Update
        switch decoder.decode(body) {
        case .success(let update): decoded = update
        case .failure(let error): return .malformed(error)
        }
        context.line.updateID = decoded.id
        context.line.updateType = decoded.type
        context.line.userID = decoded.user?.id
        guard let update = CallbackDataToken.resolve(decoded, store: state, deadline: context.deadline) else {
            context.logger.warning("button data could not be read back: the state store failed", metadata: [LogKey.degraded: "true"])
            return .unresolved
        }
        return .update(update, settings.routes.route(update, botUsername: settings.botUsername))
    }
}
