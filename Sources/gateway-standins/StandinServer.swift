import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A small blocking HTTP/1.1 server for the stand-ins, on 127.0.0.1 only: a thread per
/// connection, keep-alive, `TCP_NODELAY` and each response in one write, so a stand-in adds
/// microseconds, not a delayed-ACK stall, to the calls it answers.
final class StandinServer: Sendable {
    struct Request {
        var method: String
        var path: String
        var body: Data
    }

    struct Response {
        var status: Int
        var body: Data

        static func json(_ text: String, status: Int = 200) -> Response { Response(status: status, body: Data(text.utf8)) }
    }

    private static let blankLine = Data("\r\n\r\n".utf8)
    private let listener: Int32
    private let handler: @Sendable (Request) -> Response

    init(port: UInt16, handler: @escaping @Sendable (Request) -> Response) throws {
        self.handler = handler
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(port.bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 1024) == 0 else {
            close(listener)
            throw StandinError("cannot listen on 127.0.0.1:\(port): errno \(errno)")
        }
    }

    /// Accepts connections on a thread of its own, each served on a thread of its own.
    func start() {
        Thread.detachNewThread { [self] in
            while true {
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { continue }
                var yes: Int32 = 1
                setsockopt(connection, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
                var idle = timeval(tv_sec: 60, tv_usec: 0)
                setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &idle, socklen_t(MemoryLayout<timeval>.size))
                let thread = Thread { [self] in serve(connection) }
                thread.stackSize = 512 * 1024
                thread.start()
            }
        }
    }

    private func serve(_ connection: Int32) {
        defer { close(connection) }
        var buffer = Data()
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            // Headers up to the blank line, then Content-Length bytes of body.
            var headerEnd = buffer.range(of: Self.blankLine)
            while headerEnd == nil {
                let count = recv(connection, &chunk, chunk.count, 0)
                guard count > 0, buffer.count < 1 << 20 else { return }
                buffer.append(contentsOf: chunk[..<count])
                headerEnd = buffer.range(of: Self.blankLine)
            }
            guard let end = headerEnd else { return }
            // The head read as bytes (Foundation's splitting, trimming and lowercasing of every
            // header line cost more than the answer, on the cores the bench measures).
            let lines = Array(buffer[buffer.startIndex..<end.lowerBound]).split(separator: UInt8(ascii: "\n"))
            guard let first = lines.first else { return }
            let start = first.split(separator: UInt8(ascii: " "))
            guard start.count >= 2 else { return }
            var length = 0
            var closing = false
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
                var low = colon + 1
                var high = line.endIndex
                while low < high, line[low] == UInt8(ascii: " ") || line[low] == UInt8(ascii: "\t") { low += 1 }
                while high > low, [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r")].contains(line[high - 1]) { high -= 1 }
                let name = String(decoding: line[..<colon], as: UTF8.self).lowercased()
                let value = String(decoding: line[low..<high], as: UTF8.self).lowercased()
                if name == "content-length" { length = Int(value) ?? 0 }
                if name == "connection", value == "close" { closing = true }
            }
            guard (0...(16 << 20)).contains(length) else { return }
            while buffer.count - (end.upperBound - buffer.startIndex) < length {
                let count = recv(connection, &chunk, chunk.count, 0)
                guard count > 0 else { return }
                buffer.append(contentsOf: chunk[..<count])
            }
            let bodyStart = end.upperBound
            let body = buffer[bodyStart..<(bodyStart + length)]
            let method = String(decoding: start[0], as: UTF8.self)
            let path = String(decoding: start[1], as: UTF8.self)
            let response = handler(Request(method: method, path: path, body: Data(body)))
            buffer = Data(buffer[(bodyStart + length)...])
            var out = Data("HTTP/1.1 \(response.status) \(response.status == 200 ? "OK" : "Stand-in")\r\n".utf8)
            out += Data("Content-Type: application/json\r\nContent-Length: \(response.body.count)\r\n".utf8)
            out += Data((closing ? "Connection: close\r\n\r\n" : "\r\n").utf8) + response.body
            guard writeAll(connection, out), !closing else { return }
        }
    }

    private func writeAll(_ connection: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let count = send(connection, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                guard count > 0 else { return false }
                sent += count
            }
            return true
        }
    }
}

struct StandinError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
