#include "reconcilers/http/http_client.hpp"

#include <algorithm>
#include <cctype>
#include <mutex>

#include <curl/curl.h>

namespace metalsync {
namespace {

void global_init()
{
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t on_body(char* data, size_t size, size_t count, void* user)
{
    static_cast<std::string*>(user)->append(data, size * count);
    return size * count;
}

size_t on_header(char* data, size_t size, size_t count, void* user)
{
    auto* headers = static_cast<std::map<std::string, std::string>*>(user);
    std::string_view line(data, size * count);
    if (line.starts_with("HTTP/")) {
        headers->clear();  // a new response (after 100 Continue or a redirect)
    } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
        std::string name(line.substr(0, colon));
        std::ranges::transform(name, name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        auto value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
            value.remove_prefix(1);
        }
        while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
            value.remove_suffix(1);
        }
        auto [it, inserted] = headers->try_emplace(name, value);
        if (!inserted) {
            // Kubernetes sends one Warning header per warning: keep them all,
            // joined as RFC 9110 joins repeated fields. Others: the last wins.
            if (name == "warning") {
                it->second += ", ";
                it->second += value;
            } else {
                it->second = std::string(value);
            }
        }
    }
    return size * count;
}

} // namespace

struct HttpClient::Impl {
    CURL* curl = nullptr;
    TlsOptions tls;
    std::chrono::milliseconds connect_timeout;
    ~Impl()
    {
        if (curl != nullptr) {
            curl_easy_cleanup(curl);
        }
    }
};

std::string HttpResponse::header(const std::string& lower_case_name) const
{
    auto it = headers.find(lower_case_name);
    return it == headers.end() ? std::string() : it->second;
}

HttpClient::HttpClient(TlsOptions tls, std::chrono::milliseconds connect_timeout) : m_impl(std::make_unique<Impl>())
{
    global_init();
    m_impl->curl = curl_easy_init();
    m_impl->tls = std::move(tls);
    m_impl->connect_timeout = connect_timeout;
}

HttpClient::~HttpClient() = default;
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;

std::expected<HttpResponse, TransportError> HttpClient::request(std::string_view method, const std::string& url,
                                                                const HttpHeaders& headers, const std::string& body,
                                                                std::chrono::milliseconds timeout)
{
    CURL* curl = m_impl->curl;
    if (curl == nullptr) {
        return std::unexpected(TransportError{"curl_easy_init failed", false});
    }
    // Reset keeps the connection cache, so keep-alive still works between calls.
    curl_easy_reset(curl);

    HttpResponse response;
    char error_buffer[CURL_ERROR_SIZE] = {0};
    curl_slist* header_list = nullptr;
    for (const auto& [name, value] : headers) {
        header_list = curl_slist_append(header_list, (name + ": " + value).c_str());
    }
    // No "Expect: 100-continue" round trip on larger bodies.
    header_list = curl_slist_append(header_list, "Expect:");

    const std::string method_string(method);
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method_string.c_str());
    if (method == "HEAD") {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    }
    if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, header_list);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response.headers);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(m_impl->connect_timeout.count()));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");

    const auto& tls = m_impl->tls;
    // Blobs are copied by libcurl (CURL_BLOB_COPY): curl_easy_reset above
    // forgets them, so they are set again on every request.
    auto blob = [](const std::string& pem) {
        return curl_blob{const_cast<char*>(pem.data()), pem.size(), CURL_BLOB_COPY};
    };
    if (!tls.ca_pem.empty()) {
        auto ca = blob(tls.ca_pem);
        curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &ca);
    } else if (!tls.ca_file.empty()) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, tls.ca_file.c_str());
    }
    if (!tls.client_cert_pem.empty()) {
        auto cert = blob(tls.client_cert_pem);
        curl_easy_setopt(curl, CURLOPT_SSLCERT_BLOB, &cert);
        curl_easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM");
    } else if (!tls.client_cert.empty()) {
        curl_easy_setopt(curl, CURLOPT_SSLCERT, tls.client_cert.c_str());
    }
    if (!tls.client_key_pem.empty()) {
        auto key = blob(tls.client_key_pem);
        curl_easy_setopt(curl, CURLOPT_SSLKEY_BLOB, &key);
        curl_easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM");
    } else if (!tls.client_key.empty()) {
        curl_easy_setopt(curl, CURLOPT_SSLKEY, tls.client_key.c_str());
    }
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, tls.insecure ? 0L : 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, tls.insecure ? 0L : 2L);

    const CURLcode code = curl_easy_perform(curl);
    curl_slist_free_all(header_list);
    if (code != CURLE_OK) {
        std::string message = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);
        return std::unexpected(TransportError{std::move(message), code == CURLE_OPERATION_TIMEDOUT});
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
    return response;
}

std::string base64_encode(std::string_view in)
{
    static constexpr char k_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const unsigned n = (static_cast<unsigned char>(in[i]) << 16U) | (static_cast<unsigned char>(in[i + 1]) << 8U) |
                           static_cast<unsigned char>(in[i + 2]);
        out += k_alphabet[(n >> 18U) & 63U];
        out += k_alphabet[(n >> 12U) & 63U];
        out += k_alphabet[(n >> 6U) & 63U];
        out += k_alphabet[n & 63U];
    }
    if (i + 1 == in.size()) {
        const unsigned n = static_cast<unsigned char>(in[i]) << 16U;
        out += k_alphabet[(n >> 18U) & 63U];
        out += k_alphabet[(n >> 12U) & 63U];
        out += "==";
    } else if (i + 2 == in.size()) {
        const unsigned n = (static_cast<unsigned char>(in[i]) << 16U) | (static_cast<unsigned char>(in[i + 1]) << 8U);
        out += k_alphabet[(n >> 18U) & 63U];
        out += k_alphabet[(n >> 12U) & 63U];
        out += k_alphabet[(n >> 6U) & 63U];
        out += '=';
    }
    return out;
}

std::string basic_authorization(std::string_view user, std::string_view password)
{
    return "Basic " + base64_encode(std::string(user) + ":" + std::string(password));
}

std::string url_escape(std::string_view text)
{
    static constexpr char k_hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : text) {
        if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += k_hex[c >> 4U];
            out += k_hex[c & 15U];
        }
    }
    return out;
}

} // namespace metalsync
