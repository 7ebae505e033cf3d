import CFastCGI

#if canImport(Glibc)
import Glibc
#endif

/// One worker's wait for the next connection on the pool's listening socket, without waking
/// every idle worker for each one.
///
/// Each worker has its own epoll set holding the listening socket with `EPOLLEXCLUSIVE`, so a
/// new connection wakes one worker that is waiting (the kernel skips workers busy with a
/// request, in this process and in the pool's other processes), and the wake-up pipe without
/// it, so a stop wakes them all. Polling the shared socket instead woke every idle worker of
/// every process for each connection, and all but one found nothing to accept: at half load,
/// eight threads scheduled on two cores per request.
final class ConnectionWaiter {
    enum Event { case connection, stop, failed }

    private let epoll: Int32
    private let wakeFD: Int32
    private var events = [epoll_event](repeating: epoll_event(), count: 2)

    /// Nil when the epoll set cannot be made (out of file descriptors).
    init?(listenFD: Int32, wakeFD: Int32) {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { return nil }
        self.wakeFD = wakeFD
        var listening = epoll_event()
        listening.events = EPOLLIN.rawValue | EPOLLEXCLUSIVE.rawValue
        listening.data.fd = listenFD
        var wake = epoll_event()
        wake.events = EPOLLIN.rawValue
        wake.data.fd = wakeFD
        // Failing here, the set is closed by deinit (the object is whole by now).
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, listenFD, &listening) == 0, epoll_ctl(epoll, EPOLL_CTL_ADD, wakeFD, &wake) == 0 else {
            return nil
        }
    }

    deinit {
        close(epoll)
    }

    /// Blocks until a connection may be waiting (another worker or process may still take it
    /// first) or the pool stops.
    func wait() -> Event {
        let count = epoll_wait(epoll, &events, 2, -1)
        // Interrupted, the worker just tries: accepting answers EAGAIN when nothing waits.
        guard count >= 0 else { return errno == EINTR ? .connection : .failed }
        return events.prefix(Int(count)).contains { $0.data.fd == wakeFD } ? .stop : .connection
    }
}
