#include "reconcilers/http/redact.hpp"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <regex>
#include <set>

namespace metalsync {
namespace {

std::mutex g_secrets_mutex;

std::set<std::string, std::greater<>>& secrets()
{
    // Longest first (reverse order puts "abc" after "abcd"), so a secret that
    // contains another is masked whole.
    static std::set<std::string, std::greater<>> values;
    return values;
}

std::string lower(std::string_view text)
{
    std::string out(text);
    std::ranges::transform(out, out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

} // namespace

void remember_secret(std::string_view secret)
{
    if (secret.empty() || secret == k_redacted) {
        return;
    }
    std::lock_guard lock(g_secrets_mutex);
    secrets().emplace(secret);
}

bool is_secret_key(std::string_view key)
{
    const auto k = lower(key);
    for (const char* word : {"password", "secret", "token", "passphrase", "private_key", "credential"}) {
        if (k.find(word) != std::string::npos) {
            return true;
        }
    }
    return false;
}

void remember_secrets_in(const nlohmann::json& document)
{
    if (document.is_object()) {
        for (const auto& [key, value] : document.items()) {
            if (value.is_string() && is_secret_key(key)) {
                remember_secret(value.get<std::string>());
            } else {
                remember_secrets_in(value);
            }
        }
    } else if (document.is_array()) {
        for (const auto& value : document) {
            remember_secrets_in(value);
        }
    }
}

std::string redact(std::string text)
{
    // A remembered secret is masked where it stands as a whole token only:
    // not inside a word ("p" in "port(s)"), which would garble the message
    // and, by where the stars fall, tell a short password to its reader.
    auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
    {
        std::lock_guard lock(g_secrets_mutex);
        for (const auto& secret : secrets()) {
            for (auto pos = text.find(secret); pos != std::string::npos;) {
                const auto end = pos + secret.size();
                const bool alone = (pos == 0 || !word(text[pos - 1]) || !word(secret.front())) &&
                                   (end == text.size() || !word(text[end]) || !word(secret.back()));
                if (!alone) {
                    pos = text.find(secret, pos + 1);
                    continue;
                }
                text.replace(pos, secret.size(), k_redacted);
                pos = text.find(secret, pos + k_redacted.size());
            }
        }
    }
    // Values under credential-like keys, also ones never sent by us
    // (e.g. echoed back in someone else's message), in plain or escaped JSON.
    static const std::regex k_member(
        R"re((\\?"[A-Za-z0-9_\-]*(?:password|secret|token|passphrase|private_key|credential)[A-Za-z0-9_\-]*\\?"\s*:\s*\\?")(?:[^"\\]|\\[^"])*(\\?"))re",
        std::regex::icase);
    return std::regex_replace(text, k_member, "$1******$2");
}

} // namespace metalsync
