#pragma once

// The control socket's protocol, after ISC Kea's control channel: one JSON
// request per connection, one JSON reply.
//   {"command": "node-get", "arguments": {"name": "node-01"}}
//   {"result": 0, "text": "...", "arguments": {...}}

#include <sys/types.h>

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace metalsync {

enum ControlResult : int {
    k_result_success = 0,
    k_result_error = 1,
    k_result_unsupported = 2,
    k_result_empty = 3,
    k_result_conflict = 4,
    k_result_fatal = 5,
};

struct ControlRequest {
    std::string command;
    nlohmann::json arguments = nlohmann::json::object();
    uid_t peer_uid = 0;
    gid_t peer_gid = 0;
    pid_t peer_pid = 0;
};

struct ControlReply {
    int result = k_result_success;
    std::string text;
    nlohmann::json arguments;  // null: omitted from the reply
};

using ControlHandler = std::function<ControlReply(const ControlRequest&)>;

} // namespace metalsync
