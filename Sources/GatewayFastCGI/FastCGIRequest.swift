import CFastCGI
import GatewayCore

#if canImport(Glibc)
import Glibc
#endif

/// One thread's libfcgi request. The `FCGX_Request` lives on the heap for the object's whole
/// life: its streams point back into it, so it must never move.
///
/// Thread-confined: created, used and freed by one worker thread.
final class FastCGIRequest {
    private let request: UnsafeMutablePointer<FCGX_Request>

    init(listenFD: Int32) {
        request = .allocate(capacity: 1)
        FCGX_InitRequest(request, listenFD, 0)
    }

    deinit {
        FCGX_Free(request, 1)
        request.deallocate()
    }

    enum Accepted { case request, none, failed }

    /// Takes the next request from the non-blocking listening socket: `.none` when there was
    /// none to take (another process took it, or a connection closed before its first records).
    func accept() -> Accepted {
        let result = FCGX_Accept_r(request)
        if result >= 0 { return .request }
        return result == -EAGAIN || result == -EWOULDBLOCK || result == -EINTR ? .none : .failed
    }

    /// Ends the request: flushes the output and releases its buffers and connection.
    ///
    /// libfcgi closes a connection lingering: it shuts down its sending side, then waits for
    /// the web server to close and reads until it has (`shutdown`, `poll`, `read`), so that
    /// input left unread never resets the connection under the answer. When the request's
    /// input was read to its end, nothing is left to read and the web server sends nothing
    /// more (nginx closes a connection it does not keep), so the connection is simply closed:
    /// three system calls fewer a request, and the thread no longer waits for nginx's close.
    func finish() {
        if let input = request.pointee.in, FCGX_HasSeenEOF(input) != 0 { FCGX_Detach(request) }
        FCGX_Finish_r(request)
    }

    /// A FastCGI parameter's bytes, copied out of libfcgi's memory (it is freed by `finish`).
    /// Found as libfcgi's `FCGX_GetParam` finds it (the first `NAME=` of the list), with each
    /// entry's first byte compared before its `strncmp`: six names are asked per request, of
    /// about twenty-five parameters, and the `strncmp`s were most of the parameters' cost.
    func parameter(_ name: StaticString) -> [UInt8]? {
        guard var entry = request.pointee.envp, name.utf8CodeUnitCount > 0 else { return nil }
        let count = name.utf8CodeUnitCount
        return name.utf8Start.withMemoryRebound(to: CChar.self, capacity: count + 1) { wanted -> [UInt8]? in
            while let pointer = entry.pointee {
                // Equal for `count` bytes means none of them ends the entry: its next byte exists.
                if pointer[0] == wanted[0], strncmp(pointer, wanted, count) == 0, pointer[count] == CChar(UInt8(ascii: "=")) {
                    let value = pointer + count + 1
                    let length = strlen(value)
                    return value.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
                }
                entry += 1
            }
            return nil
        }
    }

    /// Reads the body until its end, but never more than `limit + 1` bytes: one byte past the
    /// limit is enough to know the body is too large.
    func readBody(limit: Int, expected: Int?) -> [UInt8] {
        // One byte more than the length said (or the limit): a longer body shows as such. Read
        // straight into the array's storage; only a body longer than said takes more chunks.
        var want = min(expected ?? 4096, limit) + 1
        var body: [UInt8] = []
        while body.count <= limit {
            want = min(want, limit + 1 - body.count)
            let chunk = [UInt8](unsafeUninitializedCapacity: want) { buffer, count in
                let got = buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: want) {
                    FCGX_GetStr($0, Int32(want), request.pointee.in)
                }
                count = max(0, Int(got))
            }
            if body.isEmpty { body = chunk } else { body += chunk }
            if chunk.count < want { break }
            want = 16_384
        }
        return body
    }

    /// Writes a CGI-style response: `Status:` and headers, a blank line, the body.
    /// Returns `false` when the web server has gone away.
    @discardableResult
    func write(_ response: WebhookResponse) -> Bool {
        // The head written as bytes into one buffer (string appends cost ~5k instructions a
        // request here).
        var head: [UInt8] = []
        head.reserveCapacity(160)
        head.append(contentsOf: "Status: ".utf8)
        head.append(contentsOf: String(response.status).utf8)
        head.append(UInt8(ascii: " "))
        head.append(contentsOf: Self.reason(response.status).utf8)
        head.append(contentsOf: "\r\n".utf8)
        for header in response.headers {
            head.append(contentsOf: header.name.utf8)
            head.append(contentsOf: ": ".utf8)
            head.append(contentsOf: header.value.utf8)
            head.append(contentsOf: "\r\n".utf8)
        }
        head.append(contentsOf: "Content-Length: ".utf8)
        head.append(contentsOf: String(response.body.count).utf8)
        head.append(contentsOf: "\r\n\r\n".utf8)
        return put(head) && put(response.body)
    }

    private func put(_ bytes: [UInt8]) -> Bool {
        return bytes.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress, !buffer.isEmpty else { return true }
            return base.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                FCGX_PutStr($0, Int32(buffer.count), request.pointee.out) == Int32(buffer.count)
            }
        }
    }

    private static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 403: "Forbidden"
        case 405: "Method Not Allowed"
        case 413: "Content Too Large"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}
