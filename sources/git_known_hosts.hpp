#pragma once

// OpenSSH known_hosts checking for the ssh transport. libgit2 1.5 with libssh2
// accepts any host key unless the certificate callback refuses it, so this is
// the only host authentication the ssh remote gets.

#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace metalsync {

struct KnownHostEntry {
    std::string patterns;  // as written: "host,host2" or "[host]:port", globs and "!" allowed
    std::string key_type;  // "ssh-ed25519", "ecdsa-sha2-nistp256", ...
    std::string key;       // the decoded key blob (SSH wire format), compared byte for byte
    bool revoked = false;  // "@revoked" marker
    bool hashed = false;   // "|1|salt|hash" host field: not supported, never matches
    int line = 0;          // 1-based line number in the file
};

// Skips blank lines, comments, "@cert-authority" lines and malformed lines.
std::vector<KnownHostEntry> parse_known_hosts(std::string_view text);

// The name OpenSSH records a host under: "host" on port 22, "[host]:port" otherwise.
std::string known_hosts_name(std::string_view host, int port);

// Accepts `key_blob` (SSH wire format, as libssh2 hands it over) for host:port
// when an entry for that name carries exactly this key and no "@revoked" entry
// does. Otherwise an explanation that names the host and `file_label`.
std::expected<void, std::string> check_host_key(const std::vector<KnownHostEntry>& entries,
                                                std::string_view host, int port,
                                                std::string_view key_blob,
                                                std::string_view file_label);

std::optional<std::string> base64_decode(std::string_view text);

} // namespace metalsync
