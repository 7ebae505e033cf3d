#if canImport(Glibc)
import Glibc
#endif

/// A failure of the FastCGI front: the listening socket, libfcgi, or the process pool.
/// `shortDescription` is bounded and safe for logs and metric labels.
public struct FastCGIError: Error, Sendable, CustomStringConvertible {
    private enum Code: String, Sendable {
        case notASocket = "fd_0_not_a_listening_socket"
        case libraryInit = "fcgx_init_failed"
        case socketSetup = "socket_setup_failed"
        case spawn = "spawn_failed"
        case thread = "thread_create_failed"
    }

    private let code: Code
    /// What was being attempted, e.g. `bind /run/telegram-gateway/fcgi.sock`.
    public let operation: String
    /// `errno` at the failure, when the failure came from a system call.
    public let errno: Int32?

    private init(_ code: Code, operation: String, errno: Int32?) {
        self.code = code
        self.operation = operation
        self.errno = errno
    }

    static func notASocket() -> FastCGIError {
        FastCGIError(.notASocket, operation: "check fd 0", errno: nil)
    }
    static func libraryInit() -> FastCGIError {
        FastCGIError(.libraryInit, operation: "FCGX_Init", errno: nil)
    }
    static func socketSetup(_ operation: String, errno: Int32) -> FastCGIError {
        FastCGIError(.socketSetup, operation: operation, errno: errno)
    }
    static func spawn(errno: Int32) -> FastCGIError {
        FastCGIError(.spawn, operation: "posix_spawn", errno: errno)
    }
    static func thread(errno: Int32) -> FastCGIError {
        FastCGIError(.thread, operation: "pthread_create", errno: errno)
    }

    public var shortDescription: String { code.rawValue }

    public var description: String {
        var text = "\(code.rawValue): \(operation)"
        if let errno { text += ": " + String(cString: strerror(errno)) }
        if code == .notASocket {
            text += " (run under spawn-fcgi, or give --socket PATH or --port N to run the pool's own supervisor)"
        }
        return text
    }
}
