// libFuzzer target: the control socket's request parser.
//
// Replays what ControlServer does with the bytes a peer sends: the
// ObjectScanner over a buffer that grows chunk by chunk (as recv() returns
// them), cut at the end of the first object or taken whole at EOF, then
// parse_control_request. Properties checked besides "no crash": the reply
// to a refused request is one line of well-formed JSON with result 1, and an
// accepted request has a command and object arguments.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "daemon/control_protocol.hpp"

namespace {

constexpr std::size_t k_max_request_bytes = 64 * 1024;  // ControlServerOptions' default

void check_reply(const metalsync::ControlReply& reply)
{
    std::string line = metalsync::control_reply_json(reply);
    if (line.empty() || line.back() != '\n' || line.find('\n') != line.size() - 1) {
        std::abort();
    }
    auto parsed = nlohmann::json::parse(line, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object() || parsed.at("result") != reply.result ||
        !parsed.at("text").is_string()) {
        std::abort();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::string_view input(reinterpret_cast<const char*>(data), size);
    // Chunk sizes 1, 2, 3, ... 16, 1, 2, ...: the scanner must give the same
    // answer however the stream is cut.
    metalsync::ObjectScanner scanner;
    std::string body;
    auto status = metalsync::ObjectScanner::Status::incomplete;
    std::size_t chunk = 1;
    while (body.size() < input.size() && status == metalsync::ObjectScanner::Status::incomplete &&
           body.size() <= k_max_request_bytes) {
        body.append(input.substr(body.size(), chunk));
        chunk = chunk % 16 + 1;
        status = scanner.feed(body);
    }
    if (status == metalsync::ObjectScanner::Status::not_object) {
        return 0;  // answered "expected a JSON object" without parsing
    }
    if (status == metalsync::ObjectScanner::Status::complete) {
        if (scanner.end() > body.size()) {
            std::abort();
        }
        body.resize(scanner.end());
        if (body.back() != '}' && body.back() != ']') {
            std::abort();
        }
    }
    auto request = metalsync::parse_control_request(body, k_max_request_bytes);
    if (!request) {
        if (request.error().reply.result != metalsync::k_result_error || request.error().log_reason.empty()) {
            std::abort();
        }
        check_reply(request.error().reply);
        (void)metalsync::printable(request.error().log_reason);
        return 0;
    }
    if (!request->arguments.is_object()) {
        std::abort();
    }
    // What dispatch() answers to an unknown command echoes it back.
    check_reply({metalsync::k_result_unsupported, "'" + request->command + "' command not supported.",
                 request->arguments});
    if (metalsync::printable(request->command).find_first_of("\n\r\x1b") != std::string::npos) {
        std::abort();
    }
    return 0;
}
