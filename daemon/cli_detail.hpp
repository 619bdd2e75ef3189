#pragma once

// Helpers shared by the CLI's client subcommands (cli_status.cpp,
// cli_clusters.cpp): tolerant field access on replies, tables, the call to
// the daemon with its exit codes.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/cli_status.hpp"
#include "daemon/control_protocol.hpp"

namespace metalsync::cli_detail {

using json = nlohmann::json;

inline constexpr int k_exit_ok = 0;
inline constexpr int k_exit_answered_error = 1;
inline constexpr int k_exit_unreachable = 2;

const json& field(const json& object, std::string_view key);
std::string text_of(const json& value);  // strings as they are, numbers and booleans printed, null empty
std::string str(const json& object, std::string_view key);
std::optional<std::int64_t> integer(const json& value);
std::optional<std::int64_t> integer(const json& object, std::string_view key);
std::string or_dash(std::string text);
std::string short_revision(const std::string& revision);
std::string truncate(const std::string& text, std::size_t max);
std::string table(const std::vector<std::vector<std::string>>& rows, const std::string& indent = "");
std::string key_values(const std::vector<std::pair<std::string, std::string>>& rows);
std::string list_text(const json& value, const std::string& separator = ", ");
std::string time_with_age(const json& value, std::int64_t now);
std::string age_text(const json& value, std::int64_t now);
std::int64_t now_seconds();

// One call with the common outcomes handled: unreachable → exit 2 with the
// client's sentence; a non-zero result → exit 1 with the daemon's text.
struct CallOutcome {
    std::optional<ControlReply> reply;
    int exit_code = k_exit_ok;
};

CallOutcome call_daemon(const ClientOptions& options, std::string_view command, const json& arguments = json());
void print_json(const ControlReply& reply);
bool is_json(const ClientOptions& options);

} // namespace metalsync::cli_detail
