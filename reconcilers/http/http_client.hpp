#pragma once

// A small libcurl wrapper: one easy handle per client, so connections are
// reused between calls. Thread-compatible: one instance per thread.

#include <chrono>
#include <expected>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace metalsync {

struct TlsOptions {
    std::string ca_file;      // path of a PEM file; empty: the system's CA store
    std::string client_cert;  // path of a PEM file; empty: no client certificate
    std::string client_key;   // path of a PEM file
    bool insecure = false;    // skip server certificate and host name checks
    // In-memory PEM (kubeconfig's *-data fields), handed to libcurl as blobs so
    // key material never touches the disk. Each one, when set, takes the place
    // of the path above.
    std::string ca_pem;
    std::string client_cert_pem;
    std::string client_key_pem;  // a secret: never logged, never in an error
};

inline constexpr std::chrono::milliseconds k_default_connect_timeout{10'000};
inline constexpr std::chrono::milliseconds k_default_request_timeout{60'000};

struct HttpResponse {
    long status = 0;
    std::map<std::string, std::string> headers;  // names lower-cased; last value wins, but repeated Warning headers are joined with ", "
    std::string body;

    [[nodiscard]] std::string header(const std::string& lower_case_name) const;
};

struct TransportError {
    std::string message;  // curl's description; never contains the request body
    bool timed_out = false;
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

class HttpClient {
public:
    explicit HttpClient(TlsOptions tls = {}, std::chrono::milliseconds connect_timeout = k_default_connect_timeout);
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;
    HttpClient(HttpClient&&) noexcept;
    HttpClient& operator=(HttpClient&&) noexcept;

    // Sends one request and waits for the whole answer, at most `timeout`.
    // Any HTTP status is a response; only transport failures are errors.
    std::expected<HttpResponse, TransportError> request(std::string_view method, const std::string& url,
                                                        const HttpHeaders& headers, const std::string& body,
                                                        std::chrono::milliseconds timeout = k_default_request_timeout);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// Standard base64 (RFC 4648) with padding.
std::string base64_encode(std::string_view in);

// "Basic <base64(user:password)>", the value of an Authorization header.
std::string basic_authorization(std::string_view user, std::string_view password);

// Percent-encodes everything outside RFC 3986's unreserved characters.
std::string url_escape(std::string_view text);

} // namespace metalsync
