import Foundation

/// The four services' stand-in answers, in the contract's shape.
enum ServiceStandin {
    static func answer(service: String, request: StandinServer.Request, behaviour: Behaviour, recorder: Recorder) -> StandinServer.Response {
        let body = request.body
        recorder.service(service, body: body)
        let (delay, status, hostile) = behaviour.misbehaviour(for: service)
        if delay > 0 { usleep(UInt32(delay) * 1000) }
        if let status { return .json(#"{"error":"stand-in failure"}"#, status: status) }
        if let hostile { return StandinServer.Response(status: 200, body: hostileAnswer(hostile)) }
        let json = (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:]
        let actions = actions(service: service, request: json)
        let data = AnswerJSON.data(["actions": actions])
        return StandinServer.Response(status: 200, body: data)
    }

    static func actions(service: String, request: [String: Any]) -> [[String: Any]] {
        let user = request["user"] as? [String: Any] ?? [:]
        let name = user["first_name"] as? String ?? "there"
        let internalID = request["internal_user_id"] as? String ?? "unknown"
        switch service {
        case "user_profile":
            let command = (request["command"] as? [String: Any])?["name"] as? String ?? ""
            switch command {
            case "start":
                return [
                    [
                        "type": "send_message", "text": "Welcome, \(name)! Shall I find you a match?",
                        "keyboard": [
                            [["text": "Find a match", "callback_data": "CONNECT:\(internalID.prefix(40))"]],
                            [["text": "Not now", "callback_data": "CANCEL:start"]],
                        ],
                    ]
                ]
            case "help":
                return [["type": "send_message", "text": "Send /start to begin, /profile to see your profile."]]
            default:
                return [["type": "send_message", "text": "Your profile: \(name) (\(internalID))"]]
            }
        case "matching":
            let data = (request["callback"] as? [String: Any])?["data"] as? String ?? ""
            let prefix = data.split(separator: ":").first.map(String.init) ?? data
            let text =
                [
                    "CONNECT": "Looking for a match…", "ACCEPT": "Match accepted.", "REJECT": "Match declined.", "SKIP": "Skipped.",
                ][prefix] ?? "Done."
            // A match offers the requester's own id; accepting it tells that user (another chat).
            let requester = user["id"] as? Int ?? 0
            var actions: [[String: Any]] = [
                ["type": "answer_callback", "text": text],
                [
                    "type": "edit_message", "text": text,
                    "keyboard": [[["text": "Accept", "callback_data": "ACCEPT:\(requester)"], ["text": "Skip", "callback_data": "SKIP:1"]]],
                ],
            ]
            if prefix == "ACCEPT", let other = data.split(separator: ":").dropFirst().first.flatMap({ Int($0) }), other > 0, other != requester {
                actions.append(["type": "send_message", "chat_id": other, "text": "\(name) accepted your match. Say hello!"])
            }
            return actions
        case "conversation":
            let text = request["text"] as? String ?? ""
            let state = request["conversation_state"] as? [String: Any]
            let count = (state?["messages"] as? Int ?? 0) + 1
            if text == "long button" {
                let data = "CONNECT:" + String(repeating: "0123456789abcdef", count: 12)  // 200 bytes
                return [["type": "send_message", "text": "A button with long data", "keyboard": [[["text": "Connect", "callback_data": data]]]]]
            }
            if text == "two actions" {
                return ["one", "two"].map { ["type": "send_message", "text": $0] }
            }
            if text == "three actions" {
                return ["one", "two", "three"].map { ["type": "send_message", "text": $0] }
            }
            if text == "six actions" {
                var actions: [[String: Any]] = (1...6).map { ["type": "send_message", "text": "part \($0) of 6"] }
                actions[5]["keyboard"] = [[["text": "More", "callback_data": "CONNECT:more"]]]
                return actions
            }
            if text.hasPrefix("long "), let length = Int(text.dropFirst(5)), (1...20_000).contains(length) {
                let pattern = Array("0123456789abcdefghijklmnopqrstuvwxyz\n")
                return [
                    [
                        "type": "send_message", "text": String((0..<length).map { pattern[$0 % pattern.count] }),
                        "keyboard": [[["text": "Again", "callback_data": "CONNECT:again"]]],
                    ]
                ]
            }
            return [
                ["type": "send_message", "text": "You said: \(text) (message \(count) of this conversation)"],
                ["type": "set_state", "state": ["flow": "chat", "messages": count]],
            ]
        default:
            return [["type": "send_message", "text": "Noted."]]
        }
    }
}

/// Answers a gateway must survive: 50 MiB of valid-looking JSON, objects nested 500 deep and
/// arrays 10,000 deep, one character of 800 KB (a letter and 400,000 combining marks).
func hostileAnswer(_ kind: String) -> Data {
    switch kind {
    case "huge":
        let action = Data(#"{"type":"send_message","text":"\#(String(repeating: "x", count: 1000))"},"#.utf8)
        var body = Data(#"{"actions":["#.utf8)
        body.reserveCapacity(50 << 20)
        while body.count < 50 << 20 { body.append(action) }
        body.append(Data(#"{"type":"clear_state"}]}"#.utf8))
        return body
    case "deep":
        // Under the 512 levels Foundation's parser accepts, over what a decoder recursing per
        // level survives on a 1 MiB thread stack.
        return Data(
            (#"{"actions":[{"type":"set_state","state":"# + String(repeating: #"{"a":"#, count: 500) + "1" + String(repeating: "}", count: 500)
                + "}]}").utf8)
    case "deeper":
        return Data(
            (#"{"actions":[{"type":"set_state","state":{"a":"# + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
                + "}}]}").utf8)
    default:
        // Raw UTF-8 (2 bytes a mark), under the 1 MiB an answer may be: one character, 400,001 code units.
        return Data((#"{"actions":[{"type":"send_message","text":"e"# + String(repeating: "\u{301}", count: 400_000) + #""}]}"#).utf8)
    }
}

/// The Bot API stand-in: records each call and answers like Telegram.
enum BotAPIStandin {
    /// getWebhookInfo's result for the webhook last set (with a made-up delivery error, so
    /// gatewayctl's report has something to explain).
    /// `/_control` can set the pending count and the delivery error (`webhook_pending`,
    /// `webhook_error`, `webhook_error_age`; by default 3 pending and a 403 five minutes ago).
    static func webhookInfo(_ parameters: Data?, report: Behaviour.WebhookReport) -> String {
        guard let parameters, let json = try? JSONSerialization.jsonObject(with: parameters) as? [String: Any] else {
            return #"{"url":"","has_custom_certificate":false,"pending_update_count":0}"#
        }
        var info: [String: Any] = [
            "url": json["url"] as? String ?? "", "has_custom_certificate": json["certificate"] != nil,
            "pending_update_count": report.pending,
        ]
        if let message = report.error {
            info["last_error_date"] = Int(Date().timeIntervalSince1970) - report.errorAge
            info["last_error_message"] = message
        }
        if let connections = json["max_connections"] { info["max_connections"] = Int("\(connections)") ?? connections }
        if let updates = json["allowed_updates"] {
            // A form field holds the list as JSON text.
            info["allowed_updates"] = (updates as? String).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } ?? updates
        }
        if let address = json["ip_address"] { info["ip_address"] = address }
        return String(decoding: (try? JSONSerialization.data(withJSONObject: info)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// A multipart/form-data body as a JSON object: fields as strings, a file as its name,
    /// size and whether it is a PEM certificate. Nil when the body is not multipart.
    static func formFields(_ body: Data) -> Data? {
        let bytes = [UInt8](body)
        guard bytes.starts(with: Array("--".utf8)), let end = bytes.firstIndex(of: 0x0D) else { return nil }
        let delimiter = Array("\r\n".utf8) + bytes[0..<end]
        var fields: [String: Any] = [:]
        var rest = Array(bytes[end...])
        while let next = rest.firstRange(of: delimiter) {
            let part = rest[..<next.lowerBound]
            rest = Array(rest[next.upperBound...])
            guard let split = part.firstRange(of: Array("\r\n\r\n".utf8)) else { continue }
            let headers = String(decoding: part[..<split.lowerBound], as: UTF8.self)
            let content = Data(part[split.upperBound...])
            guard let name = value(of: "name", in: headers) else { continue }
            if let filename = value(of: "filename", in: headers) {
                let text = String(decoding: content, as: UTF8.self)
                fields[name] = ["filename": filename, "size": content.count, "pem_certificate": text.hasPrefix("-----BEGIN CERTIFICATE-----")]
            } else {
                fields[name] = String(decoding: content, as: UTF8.self)
            }
        }
        return try? JSONSerialization.data(withJSONObject: fields)
    }

    private static func value(of parameter: String, in headers: String) -> String? {
        guard let start = headers.range(of: " \(parameter)=\"") ?? headers.range(of: ";\(parameter)=\"") else { return nil }
        return String(headers[start.upperBound...].prefix { $0 != "\"" })
    }

    static func answer(request: StandinServer.Request, behaviour: Behaviour, recorder: Recorder) -> StandinServer.Response {
        // Path: /bot<token>/<method>. The token is checked for shape only and never recorded.
        let parts = request.path.split(separator: "/")
        guard parts.count == 2, parts[0].hasPrefix("bot"), parts[0].contains(":") else {
            return .json(#"{"ok":false,"error_code":404,"description":"Not Found"}"#, status: 404)
        }
        let method = String(parts[1])
        let body = formFields(request.body) ?? request.body
        if behaviour.isUnauthorized {
            recorder.botAPI(method + ":401", body: body)
            return .json(#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#, status: 401)
        }
        // The chat is read only while some chat is to be refused: parsing every call's body
        // cost the stand-in more than the rest of its answer, on the cores the bench measures.
        let chat = behaviour.refusesSomeChat ? (try? JSONSerialization.jsonObject(with: body) as? [String: Any])?["chat_id"] as? Int : nil
        if let failure = behaviour.nextBotAPIFailure(chat: chat.map(Int64.init)) {
            recorder.botAPI(method + ":\(failure)", body: body)
            let answer =
                switch failure {
                case 429: #"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#
                case 403: #"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#
                default: #"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#
                }
            return .json(answer, status: failure)
        }
        recorder.botAPI(method, body: body)
        let result: String
        switch method {
        case "setWebhook":
            behaviour.setWebhook(body)
            result = "true"
        case "deleteWebhook":
            behaviour.setWebhook(nil)
            result = "true"
        case "getWebhookInfo":
            result = webhookInfo(behaviour.webhook, report: behaviour.webhookReport)
        case "getMe":
            let id = parts[0].dropFirst(3).prefix { $0 != ":" }
            result = #"{"id":\#(id),"is_bot":true,"first_name":"Stand-in","username":"standin_bot"}"#
        case "setMyCommands":
            result = "true"
        case "answerCallbackQuery":
            result = "true"
        default:
            result = #"{"message_id":1,"date":0,"chat":{"id":0,"type":"private"}}"#
        }
        return .json(#"{"ok":true,"result":\#(result)}"#)
    }
}
