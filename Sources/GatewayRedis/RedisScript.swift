import GatewayCore

/// A Lua script by name, loaded as a Redis Functions library (`FUNCTION LOAD`) and called with
/// `FCALL`: its helpers (functions and constants) are made once, when the library is loaded, and
/// only its body runs per call, with `KEYS` and `ARGV` as it has them under `EVAL`. As an
/// `EVALSHA` script every call made the helpers' closures anew: about 8k of the `begin` script's
/// ~139k instructions in Redis (callgrind).
///
/// The function's name is the script's name and a digest of its text: stores whose policies
/// differ (different constants) load different libraries, which never replace one another.
public struct RedisScript: Sendable {
    public let name: String
    /// `name_` and 16 hex digits: the library's name and its one function's.
    package let function: String
    /// The library's code, as `FUNCTION LOAD` takes it.
    package let library: String

    /// `helpers`: the functions and constants the body uses, made when the library is loaded.
    /// A library's one state that lives from call to call, Redis's clock as the call read it
    /// (``RedisScripts/clock``), is emptied by every call first.
    init(name: String, helpers: String = "", body: String) {
        func text(named function: String) -> String {
            """
            #!lua name=\(function)
            local clock_now = nil
            \(helpers)
            redis.register_function('\(function)', function(KEYS, ARGV)
              clock_now = nil
            \(body)
            end)

            """
        }
        self.name = name
        // The digest covers the whole text, this frame included: a library of the same name in
        // Redis ("already exists") is always the same code.
        function = name + "_" + Digits.hex(FNV1a.hash(text(named: name).utf8))
        library = text(named: function)
    }
}
