#include "daemon/logging.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include <spdlog/details/log_msg.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "sources/yaml_reader.hpp"

namespace metalsync {

namespace {

constexpr const char* k_logger_name = "metalsync";


void append(spdlog::memory_buf_t& dest, std::string_view text)
{
    dest.append(text.data(), text.data() + text.size());
}

void append_json_escaped(spdlog::memory_buf_t& dest, std::string_view text)
{
    static constexpr char k_hex[] = "0123456789abcdef";
    for (std::size_t i = 0; i < text.size();) {
        auto c = static_cast<unsigned char>(text[i]);
        std::size_t len = utf8_sequence_length(text, i);
        if (len == 0) {
            append(dest, "\\ufffd");
            ++i;
            continue;
        }
        i += len;
        if (len > 1) {
            append(dest, text.substr(i - len, len));
            continue;
        }
        switch (c) {
        case '"':
            append(dest, "\\\"");
            break;
        case '\\':
            append(dest, "\\\\");
            break;
        case '\n':
            append(dest, "\\n");
            break;
        case '\r':
            append(dest, "\\r");
            break;
        case '\t':
            append(dest, "\\t");
            break;
        case '\b':
            append(dest, "\\b");
            break;
        case '\f':
            append(dest, "\\f");
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                const char u[] = {'\\', 'u', '0', '0', k_hex[c >> 4], k_hex[c & 0xf]};
                dest.append(u, u + sizeof u);
            } else {
                dest.push_back(static_cast<char>(c));
            }
        }
    }
}

// One event, one line: control characters written as C escapes.
void append_line_escaped(spdlog::memory_buf_t& dest, std::string_view text)
{
    static constexpr char k_hex[] = "0123456789abcdef";
    for (char ch : text) {
        auto c = static_cast<unsigned char>(ch);
        if (c == '\n') {
            append(dest, "\\n");
        } else if (c == '\r') {
            append(dest, "\\r");
        } else if (c < 0x20 && c != '\t') {
            const char x[] = {'\\', 'x', k_hex[c >> 4], k_hex[c & 0xf]};
            dest.append(x, x + sizeof x);
        } else if (c == 0x7f) {
            append(dest, "\\x7f");
        } else {
            dest.push_back(ch);
        }
    }
}

std::string_view level_name(spdlog::level::level_enum level)
{
    const auto& name = spdlog::level::to_string_view(level);
    return {name.data(), name.size()};
}

// "<N>" syslog priorities (sd-daemon.h's SD_* values) that journald reads
// off the start of each line.
const char* journal_priority(spdlog::level::level_enum level)
{
    switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
        return "<7>";
    case spdlog::level::info:
        return "<6>";
    case spdlog::level::warn:
        return "<4>";
    case spdlog::level::err:
        return "<3>";
    case spdlog::level::critical:
        return "<2>";
    default:
        return "<6>";
    }
}

void append_time(spdlog::memory_buf_t& dest, spdlog::log_clock::time_point time, bool utc_iso)
{
    auto since_epoch = time.time_since_epoch();
    auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
    std::time_t t = static_cast<std::time_t>(seconds.count());
    std::tm tm{};
    if (utc_iso) {
        ::gmtime_r(&t, &tm);
    } else {
        ::localtime_r(&t, &tm);
    }
    std::array<char, 48> buf{};
    int n = std::snprintf(
        buf.data(), buf.size(), utc_iso ? "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" : "%04d-%02d-%02d %02d:%02d:%02d.%03d",
        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis));
    if (n > 0) {
        dest.append(buf.data(), buf.data() + std::min<std::size_t>(static_cast<std::size_t>(n), buf.size() - 1));
    }
}

class LineFormatter final : public spdlog::formatter {
public:
    explicit LineFormatter(LogFormat format) : m_format(format) {}

    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override
    {
        std::string_view payload(msg.payload.data(), msg.payload.size());
        switch (m_format) {
        case LogFormat::json:
            append(dest, "{\"time\":\"");
            append_time(dest, msg.time, true);
            append(dest, "\",\"level\":\"");
            append(dest, level_name(msg.level));
            append(dest, "\",\"logger\":\"");
            append_json_escaped(dest, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
            append(dest, "\",\"message\":\"");
            append_json_escaped(dest, payload);
            append(dest, "\"}\n");
            return;
        case LogFormat::journald:
            append(dest, journal_priority(msg.level));
            break;
        case LogFormat::text:
            append_time(dest, msg.time, false);
            dest.push_back(' ');
            break;
        }
        append(dest, level_name(msg.level));
        append(dest, ": ");
        append_line_escaped(dest, payload);
        dest.push_back('\n');
    }

    [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override
    {
        return std::make_unique<LineFormatter>(m_format);
    }

private:
    LogFormat m_format;
};

} // namespace

const std::vector<std::string>& log_level_names()
{
    static const std::vector<std::string> names{"trace", "debug", "info", "warn", "error"};
    return names;
}

bool valid_log_level(std::string_view level)
{
    return parse_log_level(level).has_value();
}

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view level)
{
    // Not spdlog::level::from_str: it turns an unknown name into "off".
    if (level == "trace") return spdlog::level::trace;
    if (level == "debug") return spdlog::level::debug;
    if (level == "info") return spdlog::level::info;
    if (level == "warn") return spdlog::level::warn;
    if (level == "error") return spdlog::level::err;
    return std::nullopt;
}

bool stderr_is_journal()
{
    const char* stream = std::getenv("JOURNAL_STREAM");
    if (stream == nullptr || *stream == '\0') {
        return false;
    }
    unsigned long long dev = 0;
    unsigned long long ino = 0;
    char extra = 0;
    if (std::sscanf(stream, "%llu:%llu%c", &dev, &ino, &extra) != 2) {
        return false;
    }
    struct stat st {};
    if (::fstat(STDERR_FILENO, &st) != 0) {
        return false;
    }
    return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

LogFormat log_format_for(std::string_view format, bool journal)
{
    if (format == "json") return LogFormat::json;
    return journal ? LogFormat::journald : LogFormat::text;
}

std::unique_ptr<spdlog::formatter> make_log_formatter(LogFormat format)
{
    return std::make_unique<LineFormatter>(format);
}

void setup_logging(LogFormat format, const std::string& level, spdlog::sink_ptr sink)
{
    sink->set_formatter(make_log_formatter(format));
    auto logger = std::make_shared<spdlog::logger>(k_logger_name, std::move(sink));
    auto parsed = parse_log_level(level);
    logger->set_level(parsed.value_or(spdlog::level::info));
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
    spdlog::set_level(parsed.value_or(spdlog::level::info));
    if (!parsed) {
        spdlog::warn("log: unknown level '{}' (one of trace, debug, info, warn, error); using info", level);
    }
}

void setup_logging(const std::string& format, const std::string& level)
{
    setup_logging(log_format_for(format, stderr_is_journal()), level,
                  std::make_shared<spdlog::sinks::stderr_sink_mt>());
}

bool set_log_level(const std::string& level)
{
    auto parsed = parse_log_level(level);
    if (!parsed) {
        return false;
    }
    spdlog::set_level(*parsed);
    return true;
}

std::string json_escape(std::string_view text)
{
    spdlog::memory_buf_t buf;
    append_json_escaped(buf, text);
    return {buf.data(), buf.size()};
}

} // namespace metalsync
