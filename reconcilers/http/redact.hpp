#pragma once

// Keeps credentials out of every error message and log line.
//
// Adapters remember each secret they send (BMC passwords in driver_info,
// Keystone passwords, tokens); redact() masks every remembered value and any
// JSON member whose key looks like a credential. Process-wide and thread-safe,
// because a secret sent by one client must not leak through another's log.

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace metalsync {

inline constexpr std::string_view k_redacted = "******";

// Remembers a value that must never appear in a message. Empty values are ignored.
void remember_secret(std::string_view secret);

// Remembers every string value in `document` under a key that looks like a
// credential (password, secret, token, ...), at any depth.
void remember_secrets_in(const nlohmann::json& document);

// True for keys such as "ipmi_password", "redfish_password", "application_credential_secret".
[[nodiscard]] bool is_secret_key(std::string_view key);

// `text` with every remembered secret, and every `"<secret-key>": "<value>"`
// JSON member, replaced by "******".
[[nodiscard]] std::string redact(std::string text);

} // namespace metalsync
