#pragma once

// The client side of the control socket (docs/architecture.md §5): one
// request, one reply. Errors are worded for an operator at a terminal.

#include <chrono>
#include <expected>
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "daemon/control_protocol.hpp"

namespace metalsync {

inline constexpr std::string_view k_default_control_socket = "/run/metalsync/metalsync.sock";

class ControlClient {
public:
    static constexpr std::chrono::milliseconds k_default_timeout{30000};

    // Connects, sends {"command": ..., "arguments": ...} (arguments omitted when
    // null), reads the reply. The error is a sentence such as "cannot connect
    // to /run/metalsync/metalsync.sock: No such file or directory (is the
    // daemon running? start it with systemctl start metalsync)". A reply with
    // a non-zero result is still a reply, not an error.
    [[nodiscard]] std::expected<ControlReply, std::string>
    call(const std::filesystem::path& socket, std::string_view command,
         const nlohmann::json& arguments = nlohmann::json(),
         std::chrono::milliseconds timeout = k_default_timeout) const;
};

} // namespace metalsync
