#if canImport(Glibc)
import Glibc
#endif

/// A POSIX thread running a closure. Plain pthreads rather than Foundation's `Thread`: the pool
/// needs the `pthread_t` to wake a worker blocked in `accept` at shutdown.
public struct WorkerThread: Sendable {
    public let id: pthread_t

    private final class Body: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    public static func start(stackBytes: Int = 1 << 20, _ run: @escaping @Sendable () -> Void) throws(FastCGIError) -> WorkerThread {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, stackBytes)
        let body = Unmanaged.passRetained(Body(run)).toOpaque()
        var id = pthread_t()
        let result = pthread_create(&id, &attributes, { raw in
            guard let raw else { return nil }
            Unmanaged<Body>.fromOpaque(raw).takeRetainedValue().run()
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
