#pragma once

// The typed failure every adapter call returns (Ironic now, Kubernetes later).

#include <expected>
#include <string>

namespace metalsync {

struct ApiError {
    int http_status = 0;       // 0 for transport errors (connection refused, timeout, TLS)
    bool retryable = false;    // 409 NodeLocked, 429, 502, 503, 504, transport errors
    bool node_locked = false;  // 409 NodeLocked: the node is busy, retry quickly (2-3 s)
    std::string message;       // the server's own message, redacted; never a request body
    std::string operation;     // e.g. "POST /v1/nodes"

    // "POST /v1/nodes: HTTP 400: <message>" for logs and reports.
    [[nodiscard]] std::string describe() const;
};

template <class T>
using ApiResult = std::expected<T, ApiError>;

} // namespace metalsync
