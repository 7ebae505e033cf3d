import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A minimal FastCGI client (one request per connection, the responder role), to reach the
/// responder pool without nginx, as anything on the host that can open the socket could.
enum FastCGIClient {
    struct Response {
        let status: Int
        let body: [UInt8]
    }

    static func request(socketPath: String, parameters: [(String, String)], body: [UInt8]) throws -> Response {
        let fd = try connect(socketPath)
        defer { close(fd) }
        return try request(on: fd, parameters: parameters, body: body)
    }

    /// Connects and sends nothing yet: a connection the responder takes and then waits on.
    static func open(socketPath: String) throws -> Int32 {
        try connect(socketPath)
    }

    /// Sends a request on a connection from `open` and reads its answer.
    static func request(on fd: Int32, parameters: [(String, String)], body: [UInt8]) throws -> Response {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        try writeAll(fd, head(parameters) + records(type: 5, body) + record(type: 5, []))

        var input: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { break }
            input += buffer[0..<count]
        }
        var stdout: [UInt8] = []
        var position = 0
        while position + 8 <= input.count {
            let type = input[position + 1]
            let contentLength = Int(input[position + 4]) << 8 | Int(input[position + 5])
            let padding = Int(input[position + 6])
            let contentStart = position + 8
            guard contentStart + contentLength <= input.count else { break }
            if type == 6 { stdout += input[contentStart..<contentStart + contentLength] }
            position = contentStart + contentLength + padding
        }
        let text = String(decoding: stdout, as: UTF8.self)
        guard let headerEnd = text.range(of: "\r\n\r\n"),
            let statusLine = text[..<headerEnd.lowerBound].split(separator: "\r\n").first(where: { $0.hasPrefix("Status: ") }),
            let status = Int(statusLine.dropFirst("Status: ".count).prefix(3))
        else { throw StackError("no FastCGI response status") }
        return Response(status: status, body: Array(text[headerEnd.upperBound...].utf8))
    }

    /// Opens a request and sends its parameters and the first half of its body, then nothing
    /// more: a client that stalls mid-body. Returns the connection, for the caller to close.
    static func stall(socketPath: String, parameters: [(String, String)], body: [UInt8]) throws -> Int32 {
        let fd = try connect(socketPath)
        do {
            try writeAll(fd, head(parameters) + records(type: 5, Array(body.prefix(body.count / 2))))
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Whether the responder's side of the connection still takes bytes: false once it has
    /// closed it (`EPIPE`), true while it has only shut down its sending side.
    static func peerReads(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        return send(fd, &byte, 1, Int32(MSG_NOSIGNAL)) == 1
    }

    private static func connect(_ socketPath: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw StackError("socket failed") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(socketPath.utf8) + [0])
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw StackError("connect \(socketPath) failed")
        }
        return fd
    }

    /// BEGIN_REQUEST (the responder role, no keep-alive) and the parameters, ended.
    private static func head(_ parameters: [(String, String)]) -> [UInt8] {
        var params: [UInt8] = []
        for (name, value) in parameters { params += length(name.utf8.count) + length(value.utf8.count) + Array(name.utf8) + Array(value.utf8) }
        return record(type: 1, [0, 1, 0, 0, 0, 0, 0, 0]) + records(type: 4, params) + record(type: 4, [])
    }

    /// A stream's content split into records of at most 65,535 bytes.
    private static func records(type: UInt8, _ content: [UInt8]) -> [UInt8] {
        stride(from: 0, to: content.count, by: 65_535).flatMap { start in
            record(type: type, Array(content[start..<min(start + 65_535, content.count)]))
        }
    }

    private static func record(type: UInt8, _ content: [UInt8]) -> [UInt8] {
        [1, type, 0, 1, UInt8(content.count >> 8), UInt8(content.count & 0xFF), 0, 0] + content
    }

    private static func length(_ value: Int) -> [UInt8] {
        value < 128 ? [UInt8(value)] : [UInt8((value >> 24) | 0x80), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            // MSG_NOSIGNAL: a connection the responder closed is an error here, not a SIGPIPE.
            let written = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw StackError("FastCGI write failed") }
            offset += written
        }
    }
}
