/// The routes file (`ROUTES_FILE`): changes to the default route table and extra services,
/// without a code change. One rule per line, `#` starts a comment:
///
/// ```
/// service  orders   https://orders.internal/telegram  timeout=2.5
/// command  orders   orders
/// command  help     conversation
/// callback BUY      orders
/// callback CONFIRM  generic
/// text              conversation
/// describe orders   Your recent orders
/// ```
///
/// `command` and `callback` lines add or replace an entry; `text` sets where plain text goes
/// (`none` ignores it); `describe` gives a command the text Telegram's command menu shows
/// (`gatewayctl set-commands`; the rest of the line, 1-256 characters). A target is a service name (the four built-in ones, or one a `service`
/// line declares earlier) or `generic`, the gateway's own confirm/cancel handler.
public enum RouteFile {
    public static func apply(
        _ contents: String, to table: RouteTable, services: [ServiceName: GatewayConfig.ServiceSettings]
    ) throws(ConfigError) -> (RouteTable, [ServiceName: GatewayConfig.ServiceSettings]) {
        var table = table
        var services = services
        var problems: [ConfigError.Problem] = []
        var describedLines: [String: String] = [:]
        for (offset, rawLine) in contents.fileLines().enumerated() {
            let line = rawLine.prefix { $0 != "#" }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard let kind = words.first else { continue }
            let place = "ROUTES_FILE:\(offset + 1)"
            func problem(_ message: String) { problems.append(.init(variable: place, message: message)) }
            func target(_ name: String) -> RouteTarget? {
                if name == "generic" { return .generic }
                let service = ServiceName(name)
                guard services[service] != nil else {
                    problem(
                        "unknown service '\(name)': declare it with a service line first, or use one of \(services.keys.map(\.rawValue).sorted().joined(separator: ", "))"
                    )
                    return nil
                }
                return .service(service)
            }
            switch (kind, words.count) {
            case ("service", 3), ("service", 4):
                let name = words[1]
                guard name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }), (1...40).contains(name.count) else {
                    problem("a service name is 1-40 of a-z, 0-9 and _")
                    continue
                }
                let url = words[2]
                guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
                    problem("expected an http:// or https:// URL for service '\(name)'")
                    continue
                }
                var timeout = 3.0
                if words.count == 4 {
                    guard words[3].hasPrefix("timeout="), let seconds = Double(words[3].dropFirst(8)), (0.05...55).contains(seconds) else {
                        problem("expected timeout=SECONDS (0.05-55)")
                        continue
                    }
                    timeout = seconds
                }
                services[ServiceName(name)] = .init(url: url, timeoutSeconds: timeout)
            case ("command", 3):
                let name = words[1].hasPrefix("/") ? String(words[1].dropFirst()) : words[1]
                guard let command = BotCommand(text: "/" + name), command.mention == nil, command.arguments.isEmpty else {
                    problem("a command is 1-32 of A-Z, a-z, 0-9 and _")
                    continue
                }
                if let target = target(words[2]) { table.commands[command.name] = target }
            case ("callback", 3):
                let prefix = words[1]
                guard !prefix.contains(":"), (1...64).contains(prefix.utf8.count) else {
                    problem("a callback prefix is 1-64 bytes without ':'")
                    continue
                }
                if let target = target(words[2]) { table.callbackPrefixes[prefix] = target }
            case ("describe", 3...):
                let name = (words[1].hasPrefix("/") ? String(words[1].dropFirst()) : words[1]).lowercased()
                // The description is the line after the name, as written (inner spaces kept).
                let afterName = line.drop { $0 == " " || $0 == "\t" }.dropFirst(words[0].count).drop { $0 == " " || $0 == "\t" }
                    .dropFirst(words[1].count)
                let description = afterName.trimmingSpaces()
                guard BotCommand(text: "/" + name)?.name == name else {
                    problem("a command is 1-32 of A-Z, a-z, 0-9 and _")
                    continue
                }
                guard (1...256).contains(description.count) else {
                    problem("a command's description is 1-256 characters")
                    continue
                }
                describedLines[name] = place
                table.descriptions[name] = description
            case ("text", 2):
                if words[1] == "none" { table.text = nil } else if let target = target(words[1]) { table.text = target }
            default:
                problem(
                    "expected 'service NAME URL [timeout=S]', 'command NAME TARGET', 'callback PREFIX TARGET', 'text TARGET' or 'describe COMMAND TEXT'"
                )
            }
        }
        for (name, place) in describedLines.sorted(by: { $0.key < $1.key }) where table.commands[name] == nil {
            problems.append(.init(variable: place, message: "'\(name)' is described but no command line or default routes it"))
        }
        guard problems.isEmpty else { throw ConfigError(problems: problems) }
        return (table, services)
    }
}

extension Substring {
    /// Without spaces, tabs and carriage returns at either end.
    func trimmingSpaces() -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        return String(drop(while: blank).reversed().drop(while: blank).reversed())
    }
}
