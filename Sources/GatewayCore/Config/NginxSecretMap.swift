/// The lines of nginx's secret map (`/etc/nginx/telegram-gateway/secrets.map`) for the
/// configured webhook secrets, so nginx and the responders always accept the same ones.
public enum NginxSecretMap {
    /// One `"~^SECRET$" 1;` line per secret. A regular expression, because nginx's map matches
    /// plain strings without regard to case. `GatewayConfig` has already checked each secret is
    /// made of A-Z, a-z, 0-9, _ and - only, none of which means anything to nginx or PCRE here.
    public static func render(_ secrets: [Secret]) -> String {
        secrets.map { "\"~^\($0.reveal())$\" 1;\n" }.joined()
    }
}
