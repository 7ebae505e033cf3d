#if canImport(Glibc)
import Glibc
#endif

/// A value behind a pthread mutex, shared by a process's threads. The product's locks are this
/// rather than `Synchronization.Mutex` so that ThreadSanitizer (`scripts/sanitize thread`),
/// which intercepts pthread mutexes but not `Mutex`'s futex, checks the code under them.
public final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
