#if canImport(Glibc)
import Glibc
#endif

/// Where the pool's own supervisor listens for nginx.
public enum ListenAddress: Sendable, Equatable {
    /// A unix socket; `group` (a name or a number) lets nginx's user reach it through a shared group.
    case unix(path: String, mode: mode_t, group: String?)
    /// A TCP port on `host` (an IPv4 address; loopback unless said otherwise).
    case tcp(host: String, port: Int)
}

/// Opens the listening socket the supervisor hands its children on fd 0.
public enum ListeningSocket {
    public static func open(_ address: ListenAddress, backlog: Int32 = 1024) throws(FastCGIError) -> Int32 {
        switch address {
        case .unix(let path, let mode, let group): try openUnix(path: path, mode: mode, group: group, backlog: backlog)
        case .tcp(let host, let port): try openTCP(host: host, port: port, backlog: backlog)
        }
    }

    private static func openUnix(path: String, mode: mode_t, group: String?, backlog: Int32) throws(FastCGIError) -> Int32 {
        let groupID = try group.map(Self.groupID)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw .socketSetup("socket path too long: \(path)", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        if isLiveUnixSocket(&address) { throw .socketSetup("another server listens on \(path)", errno: EADDRINUSE) }
        unlink(path)  // a stale socket from a process that died

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .socketSetup("socket", errno: errno) }
        // Bind with a restrictive umask so the socket is never briefly more open than `mode`.
        let previousMask = umask(0o177)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        let bindErrno = errno
        umask(previousMask)
        guard bound == 0 else {
            close(fd)
            throw .socketSetup("bind \(path)", errno: bindErrno)
        }
        if let groupID, chown(path, uid_t.max, groupID) != 0 {
            let error = errno
            close(fd)
            throw .socketSetup("chown \(path) to group \(groupID)", errno: error)
        }
        guard chmod(path, mode) == 0 else {
            let error = errno
            close(fd)
            throw .socketSetup("chmod \(path)", errno: error)
        }
        guard listen(fd, backlog) == 0 else {
            let error = errno
            close(fd)
            throw .socketSetup("listen \(path)", errno: error)
        }
        return fd
    }

    private static func groupID(_ name: String) throws(FastCGIError) -> gid_t {
        if let number = gid_t(name) { return number }
        guard let entry = getgrnam(name) else { throw .socketSetup("no such group: \(name)", errno: ENOENT) }
        return entry.pointee.gr_gid
    }

    private static func isLiveUnixSocket(_ address: inout sockaddr_un) -> Bool {
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return false }
        defer { close(probe) }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }

    private static func openTCP(host: String, port: Int, backlog: Int32) throws(FastCGIError) -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw .socketSetup("not an IPv4 address: \(host)", errno: EINVAL)
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .socketSetup("socket", errno: errno) }
        var reuse: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            let error = errno
            close(fd)
            throw .socketSetup("bind \(host):\(port)", errno: error)
        }
        guard listen(fd, backlog) == 0 else {
            let error = errno
            close(fd)
            throw .socketSetup("listen \(host):\(port)", errno: error)
        }
        return fd
    }
}
