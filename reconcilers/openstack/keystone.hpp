#pragma once

// Keystone v3 tokens for OpenStack services: authenticate, cache the token
// until shortly before it expires, and find a service's endpoint in the
// catalog that came with it.

#include <chrono>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "reconcilers/http/api_error.hpp"
#include "reconcilers/http/http_client.hpp"

namespace metalsync {

struct KeystoneCredentials {
    enum class Method { password, application_credential };
    Method method = Method::password;
    std::string auth_url;  // with or without the trailing /v3
    // password
    std::string username;
    std::string password;
    std::string user_domain_name = "Default";
    std::string project_name;
    std::string project_domain_name = "Default";
    // v3applicationcredential (the credential carries its own scope)
    std::string application_credential_id;
    std::string application_credential_secret;
    // endpoint selection in the catalog
    std::string interface = "public";
    std::string region_name;  // empty: any region
};

class KeystoneSession {
public:
    using Clock = std::chrono::system_clock;

    KeystoneSession(KeystoneCredentials credentials, TlsOptions tls,
                    std::chrono::milliseconds timeout = k_default_request_timeout);

    // A valid token, from the cache unless it expires within a minute or
    // `force_refresh` (after a 401) is set.
    ApiResult<std::string> token(bool force_refresh = false);

    // The URL of `service_type` ("baremetal") for the configured interface
    // and region, from the catalog of the current token.
    ApiResult<std::string> endpoint(const std::string& service_type);

    // How many times this session authenticated (for tests and metrics).
    [[nodiscard]] int authentications() const { return m_authentications; }

private:
    ApiResult<void> authenticate();

    KeystoneCredentials m_credentials;
    HttpClient m_http;
    std::chrono::milliseconds m_timeout;
    std::string m_token;
    Clock::time_point m_expires_at{};
    nlohmann::json m_catalog = nlohmann::json::array();
    int m_authentications = 0;
};

// The JSON body of POST /v3/auth/tokens for these credentials.
nlohmann::json keystone_auth_request(const KeystoneCredentials& credentials);

// Parses Keystone's "2024-01-01T12:00:00.000000Z"; nullopt when malformed.
std::optional<std::chrono::system_clock::time_point> parse_keystone_time(const std::string& text);

} // namespace metalsync
