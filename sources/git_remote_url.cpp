#include "sources/git_remote_url.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace metalsync {

namespace {

std::string lower(std::string_view s)
{
    std::string out(s);
    std::ranges::transform(out, out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

int default_port(std::string_view scheme)
{
    if (scheme == "ssh") {
        return 22;
    }
    if (scheme == "git") {
        return 9418;
    }
    if (scheme == "http") {
        return 80;
    }
    if (scheme == "https") {
        return 443;
    }
    return 0;
}

// Splits "host", "host:port", "[v6]" or "[v6]:port"; false when malformed.
bool split_host_port(std::string_view hostport, std::string& host, int& port)
{
    std::string_view rest;
    if (hostport.starts_with('[')) {
        auto close = hostport.find(']');
        if (close == std::string_view::npos) {
            return false;
        }
        host = lower(hostport.substr(1, close - 1));
        rest = hostport.substr(close + 1);
    } else {
        auto colon = hostport.find(':');
        host = lower(hostport.substr(0, colon));
        rest = colon == std::string_view::npos ? std::string_view{} : hostport.substr(colon);
    }
    if (host.empty()) {
        return false;
    }
    if (rest.empty()) {
        return true;
    }
    if (!rest.starts_with(':') || rest.size() == 1) {
        return false;
    }
    int value = 0;
    auto digits = rest.substr(1);
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec != std::errc{} || ptr != digits.data() + digits.size() || value <= 0 || value > 65535) {
        return false;
    }
    port = value;
    return true;
}

struct UrlParts {
    std::string_view scheme;
    std::string_view userinfo; // without the '@'
    bool has_userinfo = false;
    std::string_view hostport;
    std::size_t authority_begin = 0;
    std::size_t authority_end = 0;
};

std::optional<UrlParts> split_url(std::string_view url)
{
    auto sep = url.find("://");
    if (sep == std::string_view::npos || sep == 0) {
        return std::nullopt;
    }
    UrlParts parts;
    parts.scheme = url.substr(0, sep);
    parts.authority_begin = sep + 3;
    parts.authority_end = std::min(url.find('/', parts.authority_begin), url.size());
    auto authority = url.substr(parts.authority_begin, parts.authority_end - parts.authority_begin);
    auto at = authority.rfind('@');
    if (at != std::string_view::npos) {
        parts.has_userinfo = true;
        parts.userinfo = authority.substr(0, at);
        parts.hostport = authority.substr(at + 1);
    } else {
        parts.hostport = authority;
    }
    return parts;
}

} // namespace

std::optional<RemoteEndpoint> parse_remote_url(std::string_view url)
{
    RemoteEndpoint ep;
    if (url.starts_with('/')) {
        ep.scheme = "local";
        return ep;
    }
    if (auto parts = split_url(url)) {
        ep.scheme = lower(parts->scheme);
        if (ep.scheme == "file") {
            return ep;
        }
        if (ep.scheme != "http" && ep.scheme != "https" && ep.scheme != "ssh" && ep.scheme != "git") {
            return std::nullopt;
        }
        ep.user = std::string(parts->userinfo.substr(0, parts->userinfo.find(':')));
        ep.port = default_port(ep.scheme);
        if (!split_host_port(parts->hostport, ep.host, ep.port)) {
            return std::nullopt;
        }
        return ep;
    }
    // scp-like: [user@]host:path, the ':' before any '/'.
    auto colon = url.find(':');
    auto slash = url.find('/');
    if (colon == std::string_view::npos || colon == 0 || (slash != std::string_view::npos && slash < colon)) {
        return std::nullopt;
    }
    auto userhost = url.substr(0, colon);
    auto at = userhost.rfind('@');
    ep.scheme = "ssh";
    ep.port = 22;
    if (at != std::string_view::npos) {
        ep.user = std::string(userhost.substr(0, at));
        userhost = userhost.substr(at + 1);
    }
    ep.host = lower(userhost);
    if (ep.host.empty() || colon + 1 >= url.size()) {
        return std::nullopt;
    }
    return ep;
}

std::string redact_url(std::string_view url)
{
    auto parts = split_url(url);
    if (!parts || !parts->has_userinfo) {
        return std::string(url);
    }
    auto colon = parts->userinfo.find(':');
    if (colon == std::string_view::npos) {
        return std::string(url);
    }
    std::string out(url.substr(0, parts->authority_begin));
    out += parts->userinfo.substr(0, colon);
    out += '@';
    out += parts->hostport;
    out += url.substr(parts->authority_end);
    return out;
}

std::string url_password(std::string_view url)
{
    auto parts = split_url(url);
    if (!parts || !parts->has_userinfo) {
        return {};
    }
    auto colon = parts->userinfo.find(':');
    return colon == std::string_view::npos ? std::string{} : std::string(parts->userinfo.substr(colon + 1));
}

} // namespace metalsync
