import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Processes the tests start, with posix_spawn rather than Foundation's `Process`: a child gets
/// only stdin, stdout and stderr (no test-runner descriptors leak into daemons such as
/// spawn-fcgi's children), and its pid is ours to signal and reap.
enum ChildProcess {
    /// A clean PATH, plus sanitizer settings when scripts/sanitize runs the suite, so a
    /// sanitized responder writes its reports where the script looks for them.
    static let environment =
        ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
        + ProcessInfo.processInfo.environment.filter { $0.key.hasSuffix("SAN_OPTIONS") }.map { "\($0.key)=\($0.value)" }

    /// Starts `executable`; standard output goes to `outputPath` (or nowhere), stderr nowhere.
    static func spawn(
        _ executable: String, _ arguments: [String], outputPath: String? = nil, environment extra: [String: String] = [:],
        errorsToOutput: Bool = false
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        if errorsToOutput {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        // closefrom is not visible to Swift: close every other open descriptor one by one.
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for fd in open.compactMap(Int32.init) where fd > 2 && fcntl(fd, F_GETFD) >= 0 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }

        // Children start with no blocked signals and default handlers, whatever the runner has.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        var all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = (environment + extra.map { "\($0.key)=\($0.value)" }).map { strdup($0) } + [nil]
        defer {
            for argument in argv + envp { free(argument) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { throw StackError("cannot start \(executable): \(String(cString: strerror(result)))") }
        return pid
    }

    /// Runs a command to completion and returns its standard output; throws on a non-zero exit.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> String {
        let (status, output) = try execute(executable, arguments, environment: environment, errorsToOutput: false)
        guard status == 0 else { throw StackError("\(executable) \(arguments.first ?? "") exited with status \(status)") }
        return output
    }

    /// Runs a command to completion; its exit code and everything it printed (stdout and stderr).
    static func runCapturing(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (code: Int32, output: String)
    {
        let (status, output) = try execute(executable, arguments, environment: environment, errorsToOutput: true)
        return ((status >> 8) & 0xFF, output)
    }

    /// Runs a command to completion with its output in a temporary file; the raw wait status and the output.
    private static func execute(
        _ executable: String, _ arguments: [String], environment: [String: String], errorsToOutput: Bool
    ) throws -> (status: Int32, output: String) {
        let outputPath = FileManager.default.temporaryDirectory.appending(path: "out-\(UUID().uuidString)").path
        defer { unlink(outputPath) }
        let pid = try spawn(executable, arguments, outputPath: outputPath, environment: environment, errorsToOutput: errorsToOutput)
        let status = waitForExit(pid)
        return (status, (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
    }

    /// Reaps our child `pid` and returns its raw wait status.
    @discardableResult
    static func waitForExit(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status
    }

    /// Whether a process that is not our child has exited: absent, or a zombie its parent has
    /// not reaped yet.
    static func isGone(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return true }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return true }
        return stat[stat.index(after: close)...].split(separator: " ").first == "Z"
    }

    /// Reaps our child `pid` if it has exited; true when it is gone.
    static func reapIfExited(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == pid
    }
}
