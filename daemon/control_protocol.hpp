#pragma once

// The control socket's protocol, after ISC Kea's control channel: one JSON
// request per connection, one JSON reply.
//   {"command": "node-get", "arguments": {"name": "node-01"}}
//   {"result": 0, "text": "...", "arguments": {...}}

#include <sys/types.h>

#include <cstddef>
#include <expected>
#include <functional>
#include <string>
#include <string_view>

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

// Finds the end of the first JSON object in a growing buffer without parsing
// it: brace depth outside strings. Whether the object is valid JSON is left
// to the parser once it is complete. Feed it the whole buffer each time; it
// resumes where it stopped.
class ObjectScanner {
public:
    enum class Status { incomplete, complete, not_object };

    Status feed(std::string_view buffer);

    // One past the object's closing brace, once feed() said complete.
    [[nodiscard]] std::size_t end() const { return m_end; }

private:
    std::size_t m_pos = 0;
    std::size_t m_end = 0;
    int m_depth = 0;
    bool m_started = false;
    bool m_in_string = false;
    bool m_escape = false;
};

// A refused request: the reply the peer gets, and the reason the daemon logs.
struct ControlRequestError {
    ControlReply reply;
    std::string log_reason;
};

// A request body as read off the socket (everything up to the end of the
// first object, or up to EOF) → the command and arguments, or the error
// reply. Pure: no I/O, no logging; the peer's credentials are the caller's.
[[nodiscard]] std::expected<ControlRequest, ControlRequestError> parse_control_request(std::string_view body,
                                                                                        std::size_t max_size);

// The reply as sent: one line of well-formed JSON whatever the text holds
// (invalid UTF-8 is replaced).
[[nodiscard]] std::string control_reply_json(const ControlReply& reply);

// Untrusted text for a log line: no control characters, bounded length.
[[nodiscard]] std::string printable(std::string_view text, std::size_t max = 64);

} // namespace metalsync
