extension RouteTable {
    /// The update types worth receiving for this table, for setWebhook's `allowed_updates`:
    /// Telegram then does not send (and the pool does not spend time on) anything else.
    public var allowedUpdates: [UpdateType] {
        var types: [UpdateType] = []
        if !commands.isEmpty || text != nil { types.append(.message) }
        if !callbackPrefixes.isEmpty { types.append(.callbackQuery) }
        return types
    }
}
