import CFastCGI

#if canImport(Glibc)
import Glibc
#endif

/// A POSIX thread running a closure. Plain pthreads rather than Foundation's `Thread`: the pool
/// needs the `pthread_t` to wake a worker blocked in `accept` at shutdown.
public struct WorkerThread: Sendable {
    public let id: pthread_t

    private final class Body: Sendable {
        let name: String
        let run: @Sendable () -> Void
        init(_ name: String, _ run: @escaping @Sendable () -> Void) {
            self.name = name
            self.run = run
        }
    }

    /// The signals a responder's main thread takes (`sigtimedwait`): those that stop it, and
    /// SIGUSR1, which reopens the log file. A worker thread that took a stop signal would run
    /// libfcgi's SIGTERM handler (installed by `FCGX_Init`), which swallows it, and the process
    /// would never drain; SIGUSR1's default action would end the process.
    public static var poolSignals: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in [SIGTERM, SIGINT, SIGQUIT, SIGUSR1] { sigaddset(&set, signal) }
        return set
    }

    /// Starts `run` on a new thread named `name` (`top -H` shows it; 15 bytes are kept) with
    /// `poolSignals` blocked, whatever the caller's mask.
    public static func start(
        name: String, stackBytes: Int = 1 << 20, _ run: @escaping @Sendable () -> Void
    ) throws(FastCGIError) -> WorkerThread {
        // A thread inherits its creator's mask: block around the creation, then restore.
        var blocked = poolSignals
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, stackBytes)
        let body = Unmanaged.passRetained(Body(name, run)).toOpaque()
        var id = pthread_t()
        let result = pthread_create(
            &id, &attributes,
            { raw in
                guard let raw else { return nil }
                let body = Unmanaged<Body>.fromOpaque(raw).takeRetainedValue()
                gateway_name_thread(body.name)
                body.run()
                return nil
            }, body)
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(body).release()
            throw .thread(errno: result)
        }
        return WorkerThread(id: id)
    }

    public func join() {
        pthread_join(id, nil)
    }

    /// Lets the thread's resources go when it ends, without waiting for it.
    public func detach() {
        pthread_detach(id)
    }
}
