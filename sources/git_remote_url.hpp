#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace metalsync {

// What a Git remote URL names, as far as transport checks need it.
struct RemoteEndpoint {
    std::string scheme; // "file", "local" (a plain path), "http", "https", "ssh", "git"
    std::string user;   // from the URL's userinfo, "" when none
    std::string host;   // lower-case; IPv6 without brackets; "" for file/local
    int port = 0;       // the scheme's default when the URL names none
};

// file:///p, /abs/p, http(s)://[user[:pw]@]host[:port]/p, git://host[:port]/p,
// ssh://[user@]host[:port]/p and scp-like [user@]host:p. nullopt when unrecognised.
std::optional<RemoteEndpoint> parse_remote_url(std::string_view url);

// The URL with any password in its userinfo removed (user kept): safe for logs
// and error messages.
std::string redact_url(std::string_view url);

// The password in the URL's userinfo, "" when none (so messages can be scrubbed of it).
std::string url_password(std::string_view url);

} // namespace metalsync
