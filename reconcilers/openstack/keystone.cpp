#include "reconcilers/openstack/keystone.hpp"

#include <cstdio>
#include <ctime>

#include "reconcilers/http/redact.hpp"

namespace metalsync {
namespace {

constexpr auto k_refresh_margin = std::chrono::seconds(60);

// A string member, or "" when missing, null or not a string (Keystone sends
// "region_id": null in some catalogs).
std::string member(const nlohmann::json& object, const char* key)
{
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string tokens_url(std::string auth_url)
{
    while (!auth_url.empty() && auth_url.back() == '/') {
        auth_url.pop_back();
    }
    if (!auth_url.ends_with("/v3")) {
        auth_url += "/v3";
    }
    return auth_url + "/auth/tokens";
}

std::string keystone_message(const std::string& body)
{
    auto doc = nlohmann::json::parse(body, nullptr, false);
    if (doc.is_object() && doc.contains("error") && doc["error"].is_object()) {
        return member(doc["error"], "message");
    }
    return body.substr(0, 300);
}

} // namespace

nlohmann::json keystone_auth_request(const KeystoneCredentials& c)
{
    using nlohmann::json;
    if (c.method == KeystoneCredentials::Method::application_credential) {
        return json{{"auth",
                     {{"identity",
                       {{"methods", json::array({"application_credential"})},
                        {"application_credential",
                         {{"id", c.application_credential_id}, {"secret", c.application_credential_secret}}}}}}}};
    }
    json request{{"auth",
                  {{"identity",
                    {{"methods", json::array({"password"})},
                     {"password",
                      {{"user",
                        {{"name", c.username},
                         {"domain", {{"name", c.user_domain_name}}},
                         {"password", c.password}}}}}}}}}};
    if (!c.project_name.empty()) {
        request["auth"]["scope"] = {
            {"project", {{"name", c.project_name}, {"domain", {{"name", c.project_domain_name}}}}}};
    }
    return request;
}

std::optional<std::chrono::system_clock::time_point> parse_keystone_time(const std::string& text)
{
    std::tm tm{};
    if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                    &tm.tm_min, &tm.tm_sec) != 6) {
        return std::nullopt;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    const std::time_t t = timegm(&tm);
    if (t == static_cast<std::time_t>(-1)) {
        return std::nullopt;
    }
    return std::chrono::system_clock::from_time_t(t);
}

KeystoneSession::KeystoneSession(KeystoneCredentials credentials, TlsOptions tls, std::chrono::milliseconds timeout)
    : m_credentials(std::move(credentials)), m_http(std::move(tls)), m_timeout(timeout)
{
    remember_secret(m_credentials.password);
    remember_secret(m_credentials.application_credential_secret);
}

ApiResult<void> KeystoneSession::authenticate()
{
    const std::string url = tokens_url(m_credentials.auth_url);
    const std::string operation = "POST " + url;
    auto response = m_http.request("POST", url, {{"Content-Type", "application/json"}, {"Accept", "application/json"}},
                                   keystone_auth_request(m_credentials).dump(), m_timeout);
    if (!response) {
        return std::unexpected(ApiError{0, true, false, "Keystone unreachable: " + redact(response.error().message),
                                        operation});
    }
    const auto status = static_cast<int>(response->status);
    if (status != 201 && status != 200) {
        const bool retryable = status == 429 || status == 502 || status == 503 || status == 504;
        std::string message = "Keystone authentication failed: " + redact(keystone_message(response->body));
        return std::unexpected(ApiError{status, retryable, false, std::move(message), operation});
    }
    auto token = response->header("x-subject-token");
    auto doc = nlohmann::json::parse(response->body, nullptr, false);
    if (token.empty() || !doc.is_object() || !doc.contains("token") || !doc["token"].is_object()) {
        return std::unexpected(
            ApiError{status, false, false, "Keystone answered without X-Subject-Token or a token body", operation});
    }
    const auto& body = doc["token"];
    auto expires = parse_keystone_time(member(body, "expires_at"));
    m_token = std::move(token);
    remember_secret(m_token);
    // Without a readable expiry, keep the token for a short while only.
    m_expires_at = expires.value_or(Clock::now() + std::chrono::minutes(5));
    m_catalog = body.contains("catalog") && body["catalog"].is_array() ? body["catalog"] : nlohmann::json::array();
    ++m_authentications;
    return {};
}

ApiResult<std::string> KeystoneSession::token(bool force_refresh)
{
    if (force_refresh || m_token.empty() || Clock::now() + k_refresh_margin >= m_expires_at) {
        if (auto ok = authenticate(); !ok) {
            return std::unexpected(ok.error());
        }
    }
    return m_token;
}

ApiResult<std::string> KeystoneSession::endpoint(const std::string& service_type)
{
    if (auto t = token(); !t) {
        return std::unexpected(t.error());
    }
    for (const auto& service : m_catalog) {
        if (!service.is_object() || member(service, "type") != service_type ||
            !service.contains("endpoints")) {
            continue;
        }
        for (const auto& ep : service["endpoints"]) {
            if (!ep.is_object() || member(ep, "interface") != m_credentials.interface) {
                continue;
            }
            auto region = member(ep, "region_id");
            if (region.empty()) {
                region = member(ep, "region");
            }
            if (!m_credentials.region_name.empty() && region != m_credentials.region_name) {
                continue;
            }
            return member(ep, "url");
        }
    }
    return std::unexpected(ApiError{0, false, false,
                                    "no " + m_credentials.interface + " endpoint of type " + service_type +
                                        (m_credentials.region_name.empty() ? "" : " in region " + m_credentials.region_name) +
                                        " in the Keystone catalog",
                                    "GET catalog"});
}

} // namespace metalsync
