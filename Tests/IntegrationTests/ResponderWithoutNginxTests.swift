import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The responder checks for itself what nginx checks: the socket may be reached without nginx.
@Suite(.serialized) struct ResponderWithoutNginxTests {
    static func parameters(method: String = "POST", secret: String?, length: Int?) -> [(String, String)] {
        var parameters = [("REQUEST_METHOD", method), ("SCRIPT_NAME", "/webhook/telegram"), ("REQUEST_ID", "direct-1")]
        if let secret { parameters.append(("HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN", secret)) }
        if let length { parameters.append(("CONTENT_LENGTH", "\(length)")) }
        return parameters
    }

    @Test func secretMethodAndSizeAreCheckedByTheResponderToo() throws {
        try withStack { stack in
            let body = Array(WebhookThroughNginxTests.update(1, text: "/nope").utf8)
            func send(_ parameters: [(String, String)], _ body: [UInt8]) throws -> Int {
                try FastCGIClient.request(socketPath: stack.socketPath, parameters: parameters, body: body).status
            }
            #expect(try send(Self.parameters(secret: nil, length: body.count), body) == 403)
            #expect(try send(Self.parameters(secret: "wrong", length: body.count), body) == 403)
            #expect(try send(Self.parameters(method: "GET", secret: LocalStack.secret, length: nil), []) == 405)
            let huge = [UInt8](repeating: 0x20, count: 2 * 1024 * 1024)
            #expect(try send(Self.parameters(secret: LocalStack.secret, length: huge.count), huge) == 413)
            // A body larger than declared (or with no length) is still cut off at the limit.
            #expect(try send(Self.parameters(secret: LocalStack.secret, length: nil), huge) == 413)
            let ok = try FastCGIClient.request(
                socketPath: stack.socketPath, parameters: Self.parameters(secret: LocalStack.secret, length: body.count), body: body)
            #expect(ok.status == 200)
            #expect(String(decoding: ok.body, as: UTF8.self).contains(#""method":"sendMessage""#))
        }
    }

    @Test func aBodyThatEndsBeforeItsLengthGets503SoTelegramDeliversItAgain() throws {
        try withStack(processes: 1, threads: 2) { stack in
            let body = Array(WebhookThroughNginxTests.update(4, text: "/nope").utf8)
            let short = try FastCGIClient.request(
                socketPath: stack.socketPath, parameters: Self.parameters(secret: LocalStack.secret, length: body.count + 100), body: body)
            #expect(short.status == 503, "not acknowledged as malformed")
            #expect(stack.gatewayLog.contains(#""outcome":"incomplete_body""#))
            #expect(!stack.gatewayLog.contains(#""outcome":"malformed""#))
        }
    }

    @Test func aConnectionIsClosedAtOnceOnlyWhenItsInputWasReadToItsEnd() throws {
        // Read to its end, nothing is left to reset the connection under the answer: the
        // responder closes it as soon as it has answered. Otherwise (the body never read: a
        // wrong secret) libfcgi's lingering close stays: the responder's side stays open and reads
        // what still comes until the client closes. Either way the client has its answer first.
        try withStack(processes: 1, threads: 1) { stack in
            let body = Array(WebhookThroughNginxTests.update(7, text: "/nope").utf8)
            for (secret, status, stillReading) in [(LocalStack.secret, 200, false), ("wrong", 403, true)] {
                let fd = try FastCGIClient.open(socketPath: stack.socketPath)
                defer { close(fd) }
                let answer = try FastCGIClient.request(on: fd, parameters: Self.parameters(secret: secret, length: body.count), body: body)
                #expect(answer.status == status)
                // The answer ended with the responder's end of the stream (`request` reads to it).
                #expect(FastCGIClient.peerReads(fd) == stillReading, "secret \(secret == LocalStack.secret ? "right" : "wrong")")
            }
        }
    }

    @Test func aConnectionTakenAsTheResponderStopsIsStillAnswered() throws {
        // A responder told to stop while it waits for the first records of a connection it has
        // taken must answer it: a signal to wake it made libfcgi close such a connection
        // unanswered (nginx: 502), which a reload or a recycle under load met now and then.
        try withStack(processes: 1, threads: 1) { stack in
            let responder = try #require(stack.poolPIDs.first)
            let body = Array(WebhookThroughNginxTests.update(6, text: "/nope").utf8)
            let fd = try FastCGIClient.open(socketPath: stack.socketPath)
            defer { close(fd) }
            usleep(300_000)  // the responder's one thread takes the connection and waits for its records
            kill(responder, SIGTERM)
            usleep(300_000)
            let answer = try FastCGIClient.request(
                on: fd, parameters: Self.parameters(secret: LocalStack.secret, length: body.count), body: body)
            #expect(answer.status == 200)
            try waitUntil("the responder stops") { kill(responder, 0) != 0 }
        }
    }

    @Test func aConnectionWakesOneIdleWorkerNotEveryOne() throws {
        // Eight idle workers wait on one socket. Polling it woke all eight for every connection
        // and seven found nothing to accept.
        try withStack(processes: 1, threads: 8) { stack in
            let responder = try #require(stack.poolPIDs.first)
            func send(_ update: Int) throws -> Int {
                let body = Array(WebhookThroughNginxTests.update(update, text: "/nope").utf8)
                return try FastCGIClient.request(
                    socketPath: stack.socketPath, parameters: Self.parameters(secret: LocalStack.secret, length: body.count), body: body
                ).status
            }
            #expect(try send(100) == 200)
            let before = Self.voluntarySwitches(of: responder)
            for update in 101...200 { #expect(try send(update) == 200) }
            let after = Self.voluntarySwitches(of: responder)
            // About 2 a request now (its Redis round trip, the next wait); 3 while the close
            // lingered for nginx's; about 10 when every idle worker woke.
            let total = after.reduce(0) { sum, thread in sum + thread.value - (before[thread.key] ?? 0) }
            print("100 requests one after another: \(total) voluntary context switches in the responder")
            #expect(total < 600, "\(total) voluntary context switches for 100 requests")
        }
    }

    /// Each thread's voluntary context switches so far, by thread id.
    static func voluntarySwitches(of pid: pid_t) -> [String: Int] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var result: [String: Int] = [:]
        for task in tasks {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8) else { continue }
            let line = status.split(separator: "\n").first { $0.hasPrefix("voluntary_ctxt_switches:") }
            result[task] = line?.split(separator: "\t").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        }
        return result
    }

    @Test func oddParametersNeverCrashTheResponder() throws {
        try withStack(processes: 1, threads: 2) { stack in
            let body = Array(WebhookThroughNginxTests.update(2, text: "/nope").utf8)
            let odd: [[(String, String)]] = [
                [],
                [("REQUEST_METHOD", "")],
                [("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "-5"), ("HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN", LocalStack.secret)],
                [
                    ("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "99999999999999999999999"),
                    ("HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN", LocalStack.secret),
                ],
                [
                    ("REQUEST_METHOD", "POST"), ("REQUEST_ID", String(repeating: "é", count: 500)),
                    ("HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN", LocalStack.secret),
                ],
                [("REQUEST_METHOD", "POST"), ("HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN", String(repeating: "x", count: 70_000))],
            ]
            for parameters in odd {
                _ = try? FastCGIClient.request(socketPath: stack.socketPath, parameters: parameters, body: body)
            }
            let pid = try #require(stack.poolPIDs.first)
            #expect(ChildProcess.isGone(pid) == false, "the responder died")
            let after = try stack.post(WebhookThroughNginxTests.update(3, text: "/nope"))
            #expect(after.status == 200)
        }
    }
}
