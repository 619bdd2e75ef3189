#pragma once

// Ironic's error bodies, turned into ApiError.
//
// Ironic answers errors as {"error_message": "<JSON string>"} whose inner
// document is {"faultcode": "Client", "faultstring": "...", "debuginfo": null}
// (docs/ironic-testbed.md, 6); its auth middleware answers 401 as
// {"error": {"message": "...", "code": 401}}.

#include <string>
#include <string_view>

#include "reconcilers/http/api_error.hpp"

namespace metalsync {

// Ironic's own message from an error body (faultstring), redacted; the
// start of the raw body when it has no known shape.
std::string ironic_error_message(std::string_view body);

// Maps one HTTP answer to an ApiError: 409 NodeLocked -> node_locked and
// retryable; 429, 502, 503, 504 -> retryable; other statuses -> not retryable.
ApiError ironic_api_error(std::string operation, int http_status, std::string_view body);

// A transport failure (no HTTP answer): always retryable.
ApiError ironic_transport_error(std::string operation, const std::string& curl_message);

} // namespace metalsync
