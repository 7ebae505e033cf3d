import Foundation
import GatewayHTTP
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The foundation's path on real components: HTTPS to nginx on loopback, FastCGI to the release
/// responder under spawn-fcgi.
@Suite(.serialized) struct WebhookThroughNginxTests {
    static func update(_ id: Int, text: String) -> String {
        #"{"update_id":\#(id),"message":{"message_id":\#(id),"from":{"id":4242,"is_bot":false,"first_name":"Ada"},"chat":{"id":4242,"type":"private"},"date":1732540000,"text":"\#(text)"}}"#
    }

    @Test func unknownCommandGetsTheSendMessageWebhookReply() throws {
        try withStack { stack in
            let response = try stack.post(Self.update(1, text: "/definitely_unknown"))
            #expect(response.status == 200)
            #expect(response.header("content-type") == "application/json")
            let reply = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
            #expect(reply?["method"] as? String == "sendMessage")
            #expect(reply?["chat_id"] as? Int == 4242)
            #expect((reply?["text"] as? String)?.contains("don't know that command") == true)
        }
    }

    @Test func wrongOrMissingSecretIsRefusedByNginxAndNeverReachesTheResponder() throws {
        try withStack { stack in
            let before = stack.gatewayLog
            let secrets: [String?] = [nil, "", "wrong", LocalStack.secret.uppercased(), LocalStack.secret + "x"]
            for (index, secret) in secrets.enumerated() {
                let response = try stack.post(Self.update(2 + index, text: "/x"), secret: secret)
                #expect(response.status == 403)
            }
            #expect(stack.gatewayLog == before, "the responder logged a request nginx should have refused")
        }
    }

    @Test func onlyPostIsAllowed() throws {
        try withStack { stack in
            for method in ["GET", "PUT", "DELETE"] {
                let response = try stack.post(Array(Self.update(6, text: "/x").utf8), method: method)
                #expect(response.status == 405, "\(method)")
                #expect(response.header("allow") == "POST")
            }
        }
    }

    @Test func badBodiesGet200Or413AndThePoolKeepsAnswering() throws {
        try withStack { stack in
            #expect(try stack.post("{not json").status == 200)
            #expect(try stack.post("").status == 200)
            #expect(try stack.post([0xFF, 0xFE, 0x7B, 0x22, 0xC3]).status == 200)
            #expect(try stack.post(#"{"update_id":9,"message":{"text":"\#u{FFFD}"}}"#).status == 200)
            #expect(try stack.post([UInt8](repeating: 0x20, count: 10 * 1024 * 1024)).status == 413)
            let after = try stack.post(Self.update(10, text: "/still_there"))
            #expect(after.status == 200)
            #expect(!after.body.isEmpty)
            #expect(stack.gatewayLog.contains(#""outcome":"malformed""#))
        }
    }

    @Test func manyConcurrentUpdatesAreAllAnswered() throws {
        try withStack { stack in
            let statuses = Mutex<[Int]>([])
            let url = stack.url
            let certificate = stack.directory.appending(path: "tls/cert.pem").path
            DispatchQueue.concurrentPerform(iterations: 8) { worker in
                guard let client = try? HTTPClient(caFile: certificate) else { return }
                for index in 0..<25 {
                    let body = Array(Self.update(1000 + worker * 100 + index, text: "/unknown_\(index)").utf8)
                    let request = HTTPRequest(
                        method: "POST", url: url,
                        headers: [("X-Telegram-Bot-Api-Secret-Token", LocalStack.secret)], body: body, timeoutSeconds: 15)
                    let status = (try? client.send(request).status) ?? -1
                    statuses.withLock { $0.append(status) }
                }
            }
            #expect(statuses.withLock { $0 } == Array(repeating: 200, count: 200))
        }
    }

    @Test func noLogLineHoldsMessageTextOrSecrets() throws {
        try withStack { stack in
            let marker = "private-words-\(UInt32.random(in: 0...UInt32.max))"
            _ = try stack.post(Self.update(20, text: marker))
            _ = try stack.post(Self.update(21, text: "/\(marker.replacing("-", with: "_"))"))
            _ = try stack.post(Self.update(22, text: "hi"), secret: "wrong-\(marker)")
            _ = try stack.post("{\"garbage\":\"\(marker)\"")
            let logs = stack.gatewayLog + stack.nginxLogs
            #expect(stack.gatewayLog.contains(#""update_id":20"#))
            for forbidden in [marker, marker.replacing("-", with: "_"), LocalStack.secret, LocalStack.token] {
                #expect(!logs.contains(forbidden), "a log holds \(forbidden)")
            }
        }
    }
}
