#include "sources/git_known_hosts.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <sstream>

namespace metalsync {

namespace {

std::string lower(std::string_view s)
{
    std::string out(s);
    std::ranges::transform(out, out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

// OpenSSH patterns: '*' and '?' only ('[' is literal, as in "[host]:port").
bool glob_match(std::string_view pattern, std::string_view text)
{
    std::size_t p = 0;
    std::size_t t = 0;
    std::size_t star = std::string_view::npos;
    std::size_t resume = 0;
    while (t < text.size()) {
        if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
            ++p;
            ++t;
        } else if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            resume = t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++resume;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') {
        ++p;
    }
    return p == pattern.size();
}

bool patterns_match(std::string_view patterns, const std::string& name)
{
    bool matched = false;
    std::size_t start = 0;
    while (start <= patterns.size()) {
        auto comma = patterns.find(',', start);
        auto pattern = patterns.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
        bool negated = pattern.starts_with('!');
        if (negated) {
            pattern.remove_prefix(1);
        }
        if (!pattern.empty() && glob_match(lower(pattern), name)) {
            if (negated) {
                return false;
            }
            matched = true;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        start = comma + 1;
    }
    return matched;
}

// The key type named inside an SSH wire-format blob (uint32 length + string).
std::string blob_key_type(std::string_view blob)
{
    if (blob.size() < 4) {
        return "unknown";
    }
    std::uint32_t len = 0;
    for (int i = 0; i < 4; ++i) {
        len = (len << 8) | static_cast<unsigned char>(blob[static_cast<std::size_t>(i)]);
    }
    if (len == 0 || len > 64 || blob.size() < 4 + std::size_t{len}) {
        return "unknown";
    }
    return std::string(blob.substr(4, len));
}

} // namespace

std::optional<std::string> base64_decode(std::string_view text)
{
    std::string out;
    std::uint32_t buffer = 0;
    int bits = 0;
    std::size_t padding = 0;
    for (char c : text) {
        int value = 0;
        if (c >= 'A' && c <= 'Z') {
            value = c - 'A';
        } else if (c >= 'a' && c <= 'z') {
            value = c - 'a' + 26;
        } else if (c >= '0' && c <= '9') {
            value = c - '0' + 52;
        } else if (c == '+') {
            value = 62;
        } else if (c == '/') {
            value = 63;
        } else if (c == '=') {
            ++padding;
            continue;
        } else {
            return std::nullopt;
        }
        if (padding > 0) {
            return std::nullopt; // data after padding
        }
        buffer = (buffer << 6) | static_cast<std::uint32_t>(value);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((buffer >> bits) & 0xffU));
        }
    }
    if (padding > 2 || (text.size() % 4 != 0 && padding > 0)) {
        return std::nullopt;
    }
    return out;
}

std::vector<KnownHostEntry> parse_known_hosts(std::string_view text)
{
    std::vector<KnownHostEntry> entries;
    std::istringstream in{std::string(text)};
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
        ++number;
        std::istringstream fields(line);
        std::string first;
        if (!(fields >> first) || first.starts_with('#')) {
            continue;
        }
        KnownHostEntry entry;
        entry.line = number;
        if (first.starts_with('@')) {
            if (first == "@revoked") {
                entry.revoked = true;
            } else {
                continue; // @cert-authority: host certificates are not supported
            }
            if (!(fields >> first)) {
                continue;
            }
        }
        entry.patterns = first;
        entry.hashed = first.starts_with("|1|");
        std::string encoded;
        if (!(fields >> entry.key_type >> encoded)) {
            continue;
        }
        auto key = base64_decode(encoded);
        if (!key || key->empty()) {
            continue;
        }
        entry.key = std::move(*key);
        entries.push_back(std::move(entry));
    }
    return entries;
}

std::string known_hosts_name(std::string_view host, int port)
{
    if (port == 22 || port == 0) {
        return lower(host);
    }
    return "[" + lower(host) + "]:" + std::to_string(port);
}

std::expected<void, std::string> check_host_key(const std::vector<KnownHostEntry>& entries, std::string_view host,
                                                int port, std::string_view key_blob, std::string_view file_label)
{
    const std::string name = known_hosts_name(host, port);
    const std::string offered = blob_key_type(key_blob);
    bool any_for_host = false;
    bool any_hashed = false;
    bool accepted = false;
    for (const auto& entry : entries) {
        any_hashed = any_hashed || entry.hashed;
        if (entry.hashed || !patterns_match(entry.patterns, name)) {
            continue;
        }
        if (entry.revoked) {
            if (entry.key == key_blob) {
                return std::unexpected("ssh host key (" + offered + ") of " + name + " is marked @revoked in " +
                                       std::string(file_label) + " line " + std::to_string(entry.line) +
                                       "; refusing to connect");
            }
            continue;
        }
        any_for_host = true;
        accepted = accepted || entry.key == key_blob;
    }
    if (accepted) {
        return {};
    }
    if (any_for_host) {
        return std::unexpected("ssh host key (" + offered + ") of " + name + " does not match the key recorded in " +
                               std::string(file_label) + "; refusing to connect (possible man-in-the-middle)");
    }
    std::string message = "ssh host " + name + " is not in " + std::string(file_label) +
                          "; refusing to connect (add it, e.g. ssh-keyscan" +
                          (port != 22 && port != 0 ? " -p " + std::to_string(port) : std::string{}) + " " +
                          std::string(host) + ")";
    if (any_hashed) {
        message += "; hashed entries (|1|...) are not supported, list plain host names";
    }
    return std::unexpected(message);
}

} // namespace metalsync
