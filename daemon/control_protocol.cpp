#include "daemon/control_protocol.hpp"

namespace metalsync {

namespace {

// nlohmann's messages start with "[json.exception.parse_error.101] "; an
// operator does not need that part.
std::string parse_error_text(const std::exception& e)
{
    std::string text = e.what();
    if (text.starts_with("[json.exception.")) {
        auto close = text.find("] ");
        if (close != std::string::npos) {
            text.erase(0, close + 2);
        }
    }
    return text;
}

// The same, for the log: nlohmann quotes the bytes it read last ("last
// read: '{\"token\": \"s3cr'"), and a request's bytes never reach the log,
// which may hold a secret someone pasted. The reply to the sender keeps them.
std::string parse_error_log_text(const std::exception& e)
{
    std::string text = parse_error_text(e);
    const std::string marker = "last read: '";
    for (auto at = text.find(marker); at != std::string::npos; at = text.find(marker, at)) {
        auto start = at + marker.size();
        // The quoted fragment ends at the last "'" before the next "; " (or
        // the end): the fragment itself may contain quotes and semicolons.
        auto next = text.find("; expected", start);
        auto close = text.rfind('\'', next == std::string::npos ? std::string::npos : next);
        if (close == std::string::npos || close < start) close = text.size();
        text.replace(at, close + (close < text.size() ? 1 : 0) - at, "(the bytes read are not logged)");
        at += 1;
    }
    return text;
}

std::unexpected<ControlRequestError> malformed(std::string reason, std::string log_reason)
{
    return std::unexpected(
        ControlRequestError{ControlReply{k_result_error, "malformed request: " + std::move(reason), nullptr},
                            std::move(log_reason)});
}

} // namespace

ObjectScanner::Status ObjectScanner::feed(std::string_view buffer)
{
    for (; m_pos < buffer.size(); ++m_pos) {
        char c = buffer[m_pos];
        if (!m_started) {
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                continue;
            }
            if (c != '{') {
                return Status::not_object;
            }
            m_started = true;
            m_depth = 1;
            continue;
        }
        if (m_in_string) {
            if (m_escape) {
                m_escape = false;
            } else if (c == '\\') {
                m_escape = true;
            } else if (c == '"') {
                m_in_string = false;
            }
            continue;
        }
        if (c == '"') {
            m_in_string = true;
        } else if (c == '{' || c == '[') {
            ++m_depth;
        } else if ((c == '}' || c == ']') && --m_depth == 0) {
            m_end = ++m_pos;
            return Status::complete;
        }
    }
    return Status::incomplete;
}

std::expected<ControlRequest, ControlRequestError> parse_control_request(std::string_view body, std::size_t max_size)
{
    if (body.size() > max_size) {
        std::string limit = std::to_string(max_size);
        return std::unexpected(ControlRequestError{
            ControlReply{k_result_error, "request larger than " + limit + " bytes", nullptr},
            "larger than " + limit + " bytes"});
    }
    if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
        return malformed("empty request", "empty");
    }
    if (body[body.find_first_not_of(" \t\r\n")] != '{') {
        return malformed("expected a JSON object", "not a JSON object");
    }
    nlohmann::json parsed;
    try {
        parsed = nlohmann::json::parse(body);
    } catch (const nlohmann::json::exception& e) {
        return malformed(parse_error_text(e), parse_error_log_text(e));
    }
    auto command = parsed.find("command");
    if (!parsed.is_object() || command == parsed.end()) {
        return malformed("missing \"command\"", "missing \"command\"");
    }
    if (!command->is_string()) {
        return malformed("\"command\" must be a string", "\"command\" is not a string");
    }
    ControlRequest request;
    request.command = command->get<std::string>();
    auto arguments = parsed.find("arguments");
    if (arguments != parsed.end() && !arguments->is_null()) {
        if (!arguments->is_object()) {
            return malformed("\"arguments\" must be an object",
                             "'" + printable(request.command) + "' arguments not an object");
        }
        request.arguments = std::move(*arguments);
    }
    return request;
}

std::string control_reply_json(const ControlReply& reply)
{
    constexpr auto replace = nlohmann::json::error_handler_t::replace;
    std::string out = "{\"result\":" + std::to_string(reply.result) +
                      ",\"text\":" + nlohmann::json(reply.text).dump(-1, ' ', false, replace);
    if (!reply.arguments.is_null()) {
        out += ",\"arguments\":" + reply.arguments.dump(-1, ' ', false, replace);
    }
    out += "}\n";
    return out;
}

std::string printable(std::string_view text, std::size_t max)
{
    std::string out;
    for (char c : text.substr(0, max)) {
        out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
    }
    if (text.size() > max) {
        out += "...";
    }
    return out;
}

} // namespace metalsync
