#pragma once

// The daemon's log output: one line per event on stderr, in one of three
// shapes.
//   text     2026-11-25 17:43:05.123 info: node node-01: deploy requested
//   journald <6>info: node node-01: deploy requested
//            (under systemd: no timestamp, journald adds its own; the <N>
//            prefix gives journald the priority, so `journalctl -p warning`
//            works, and is stripped from the stored message)
//   json     {"time":"2026-11-25T17:43:05.123Z","level":"info","logger":"metalsync","message":"..."}
// In text and journald lines control characters in the message are escaped
// (\n, \t, \x1b) so a node name or an Ironic error cannot start a forged
// line; in JSON the message is a properly escaped JSON string (invalid UTF-8
// becomes U+FFFD, which every JSON parser accepts).

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/common.h>
#include <spdlog/formatter.h>

namespace metalsync {

enum class LogFormat { text, journald, json };

// The names the configuration accepts for log.level, in increasing severity.
[[nodiscard]] const std::vector<std::string>& log_level_names();
[[nodiscard]] bool valid_log_level(std::string_view level);
[[nodiscard]] std::optional<spdlog::level::level_enum> parse_log_level(std::string_view level);

// True when stderr is connected to the journal: JOURNAL_STREAM ("dev:inode")
// names the file stderr is, as systemd documents. A JOURNAL_STREAM inherited
// by a process whose stderr was redirected elsewhere does not count.
[[nodiscard]] bool stderr_is_journal();

// `format` is the configuration's log.format ("text" or "json"); text under
// the journal becomes journald.
[[nodiscard]] LogFormat log_format_for(std::string_view format, bool journal);

[[nodiscard]] std::unique_ptr<spdlog::formatter> make_log_formatter(LogFormat format);

// Makes the default logger "metalsync" write to stderr in the given format
// and level. Safe to call again (the logger is replaced). An unknown level
// is logged as a warning and info is used.
void setup_logging(const std::string& format, const std::string& level);
// The same onto a given sink, with the journal decision made by the caller (tests).
void setup_logging(LogFormat format, const std::string& level, spdlog::sink_ptr sink);

// Changes the level of every logger (config-reload). Returns false and
// changes nothing when the name is not a level.
bool set_log_level(const std::string& level);

// `text` as the inside of a JSON string (no surrounding quotes).
[[nodiscard]] std::string json_escape(std::string_view text);

} // namespace metalsync
