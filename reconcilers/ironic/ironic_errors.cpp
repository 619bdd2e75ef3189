#include "reconcilers/ironic/ironic_errors.hpp"

#include <nlohmann/json.hpp>

#include "reconcilers/http/redact.hpp"

namespace metalsync {
namespace {

constexpr size_t k_max_raw_body = 300;

std::string string_member(const nlohmann::json& object, const char* key)
{
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The faultstring of an Ironic fault document, given as an object or as JSON text.
std::string faultstring(const nlohmann::json& fault)
{
    if (fault.is_string()) {
        auto inner = nlohmann::json::parse(fault.get<std::string>(), nullptr, false);
        if (inner.is_object()) {
            return faultstring(inner);
        }
        return fault.get<std::string>();
    }
    if (fault.is_object()) {
        return string_member(fault, "faultstring");
    }
    return {};
}

bool is_node_locked(std::string_view body, const std::string& message)
{
    // Ironic's NodeLocked text: "Node <uuid> is locked by host <host>, please
    // retry after the current operation is completed." Some deployments also
    // pass the exception class name ("NodeLocked") through.
    return message.find("is locked by host") != std::string::npos || body.find("NodeLocked") != std::string_view::npos;
}

} // namespace

std::string ironic_error_message(std::string_view body)
{
    std::string message;
    auto doc = nlohmann::json::parse(body, nullptr, false);
    if (doc.is_object()) {
        if (doc.contains("error_message")) {
            message = faultstring(doc["error_message"]);
        } else if (doc.contains("error") && doc["error"].is_object()) {
            message = string_member(doc["error"], "message");
        } else if (doc.contains("faultstring")) {
            message = faultstring(doc);
        }
    }
    if (message.empty()) {
        message = std::string(body.substr(0, k_max_raw_body));
        if (body.size() > k_max_raw_body) {
            message += "...";
        }
    }
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
        message.pop_back();
    }
    return redact(std::move(message));
}

ApiError ironic_api_error(std::string operation, int http_status, std::string_view body)
{
    ApiError error;
    error.http_status = http_status;
    error.operation = std::move(operation);
    error.message = ironic_error_message(body);
    if (http_status == 409 && is_node_locked(body, error.message)) {
        error.node_locked = true;
        error.retryable = true;
    } else if (http_status == 429 || http_status == 502 || http_status == 503 || http_status == 504) {
        error.retryable = true;
    }
    if (http_status == 401) {
        error.message = "authentication failed: " + error.message;
    } else if (http_status == 403) {
        error.message = "not authorised: " + error.message;
    }
    return error;
}

ApiError ironic_transport_error(std::string operation, const std::string& curl_message)
{
    return ApiError{0, true, false, "Ironic unreachable: " + redact(curl_message), std::move(operation)};
}

} // namespace metalsync
