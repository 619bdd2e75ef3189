// Logging: the three line shapes (text, journald, JSON) written to a real
// sink and to the process's real stderr (a pipe put in place with dup2), JSON
// lines read back with nlohmann::json, and level changes at run time.

#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "daemon/logging.hpp"
#include "tests/support/test_support.hpp"

using namespace metalsync;
using json = nlohmann::json;

namespace {

std::vector<std::string> lines_of(const std::string& text)
{
    std::vector<std::string> lines;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        lines.push_back(line);
    }
    return lines;
}

struct CapturedLog {
    std::ostringstream out;
    std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
};

// Runs `body` with fd 2 pointing into a pipe; returns what was written there.
// With `journal`, JOURNAL_STREAM names the pipe as systemd would.
std::string capture_stderr(bool journal, const std::function<void()>& body)
{
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    int saved = ::dup(STDERR_FILENO);
    REQUIRE(saved >= 0);
    REQUIRE(::dup2(fds[1], STDERR_FILENO) == STDERR_FILENO);
    ::close(fds[1]);
    const char* old_env = std::getenv("JOURNAL_STREAM");
    std::string saved_env = old_env ? old_env : "";
    if (journal) {
        struct stat st {};
        REQUIRE(::fstat(STDERR_FILENO, &st) == 0);
        auto value = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
        ::setenv("JOURNAL_STREAM", value.c_str(), 1);
    } else {
        ::unsetenv("JOURNAL_STREAM");
    }
    body();
    spdlog::default_logger()->flush();
    ::dup2(saved, STDERR_FILENO);
    ::close(saved);
    if (old_env) {
        ::setenv("JOURNAL_STREAM", saved_env.c_str(), 1);
    } else {
        ::unsetenv("JOURNAL_STREAM");
    }
    std::string out;
    char buf[4096];
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
    while (true) {
        ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
    return out;
}

const std::regex k_timestamp(R"(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})");

} // namespace

TEST_SUITE("daemon")
{

    TEST_CASE("logging: JSON lines stay one valid object per event whatever the message holds")
    {
        CapturedLog log;
        setup_logging(LogFormat::json, "trace", log.sink);
        const std::vector<std::string> messages{
            "plain message",
            "node \"node-01\": quoted",
            R"(C:\path\with\backslashes and a trailing one \)",
            "first line\nsecond line\r\nthird",
            std::string("controls: \x01\x02\x1b[31mred\x1b[0m \t tab \b \f \x7f end"),
            std::string("nul inside: a\0b", 15),
            "unicode é ü 日本 🚀",
            "bad utf-8: \xff\xfe and a lone continuation \x80 and truncated \xe2\x82",
            "{\"looks\":\"like json\"}",
            "",
        };
        for (const auto& m : messages) {
            spdlog::info("{}", m);
        }
        spdlog::warn("node {}: {} failed ({})", "node-\"7\"", "deploy", "line\nbreak");
        auto lines = lines_of(log.out.str());
        REQUIRE(lines.size() == messages.size() + 1);
        for (std::size_t i = 0; i < lines.size(); ++i) {
            json j;
            REQUIRE_NOTHROW(j = json::parse(lines[i]));
            REQUIRE(j.is_object());
            CHECK(j.size() == 4);
            CHECK(j["logger"] == "metalsync");
            CHECK(std::regex_search(j["time"].get<std::string>(), k_timestamp));
            CHECK(j["time"].get<std::string>().ends_with("Z"));
            if (i < messages.size()) {
                CHECK(j["level"] == "info");
                if (messages[i].starts_with("bad utf-8")) {
                    CHECK(j["message"] ==
                          "bad utf-8: \xEF\xBF\xBD\xEF\xBF\xBD and a lone continuation \xEF\xBF\xBD and truncated "
                          "\xEF\xBF\xBD\xEF\xBF\xBD");
                } else {
                    CHECK(j["message"] == messages[i]);
                }
            } else {
                CHECK(j["level"] == "warning");
                CHECK(j["message"] == "node node-\"7\": deploy failed (line\nbreak)");
            }
        }
        CHECK(json_escape("a\"b\\c\nd\x01") == "a\\\"b\\\\c\\nd\\u0001");
    }

    TEST_CASE("logging: journald lines carry a priority and no timestamp; text lines have one")
    {
        CapturedLog journal;
        setup_logging(LogFormat::journald, "debug", journal.sink);
        spdlog::info("node node-01: deploy requested");
        spdlog::warn("ironic: cannot observe");
        spdlog::error("socket: failed");
        spdlog::debug("details");
        spdlog::info("forged?\n<0>emerg: not a real line");
        auto lines = lines_of(journal.out.str());
        REQUIRE(lines.size() == 5);
        CHECK(lines[0] == "<6>info: node node-01: deploy requested");
        CHECK(lines[1] == "<4>warning: ironic: cannot observe");
        CHECK(lines[2] == "<3>error: socket: failed");
        CHECK(lines[3] == "<7>debug: details");
        CHECK(lines[4] == "<6>info: forged?\\n<0>emerg: not a real line");
        for (const auto& line : lines) {
            CHECK_FALSE(std::regex_search(line, k_timestamp));
        }

        CapturedLog text;
        setup_logging(LogFormat::text, "info", text.sink);
        spdlog::info("hello");
        auto text_lines = lines_of(text.out.str());
        REQUIRE(text_lines.size() == 1);
        CHECK(std::regex_match(text_lines[0], std::regex(R"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} info: hello)")));
    }

    TEST_CASE("logging: setup_logging on the real stderr follows JOURNAL_STREAM")
    {
        auto journal = capture_stderr(true, [] {
            setup_logging("text", "info");
            spdlog::info("under systemd");
        });
        CHECK(journal == "<6>info: under systemd\n");

        auto terminal = capture_stderr(false, [] {
            setup_logging("text", "info");
            spdlog::info("on a terminal");
        });
        CHECK(std::regex_search(terminal, k_timestamp));
        CHECK(terminal.ends_with(" info: on a terminal\n"));

        // JOURNAL_STREAM inherited, but stderr is not that stream: not the journal.
        auto inherited = capture_stderr(false, [] {
            ::setenv("JOURNAL_STREAM", "8:12345", 1);
            CHECK_FALSE(stderr_is_journal());
            setup_logging("text", "info");
            spdlog::info("redirected");
        });
        CHECK(std::regex_search(inherited, k_timestamp));

        auto json_out = capture_stderr(true, [] {
            setup_logging("json", "info");
            spdlog::info("as \"json\"");
        });
        auto parsed = json::parse(json_out);
        CHECK(parsed["message"] == "as \"json\"");
    }

    TEST_CASE("logging: level changes take effect at once; unknown names change nothing")
    {
        CapturedLog log;
        setup_logging(LogFormat::journald, "info", log.sink);
        spdlog::debug("hidden");
        CHECK(set_log_level("debug"));
        spdlog::debug("shown");
        CHECK(set_log_level("error"));
        spdlog::warn("hidden too");
        spdlog::error("an error");
        CHECK_FALSE(set_log_level("verbose"));
        CHECK_FALSE(set_log_level(""));
        spdlog::error("still at error");
        spdlog::info("still hidden");
        CHECK(lines_of(log.out.str()) ==
              std::vector<std::string>{"<7>debug: shown", "<3>error: an error", "<3>error: still at error"});

        for (const auto& name : log_level_names()) {
            CHECK(valid_log_level(name));
        }
        CHECK(log_level_names() == std::vector<std::string>{"trace", "debug", "info", "warn", "error"});
        CHECK(parse_log_level("warn") == spdlog::level::warn);
        CHECK_FALSE(valid_log_level("off"));
        CHECK_FALSE(valid_log_level("INFO"));

        // An unknown level at start-up is not "off" (spdlog's from_str would be).
        CapturedLog fallback;
        setup_logging(LogFormat::journald, "loud", fallback.sink);
        spdlog::info("visible");
        auto lines = lines_of(fallback.out.str());
        REQUIRE(lines.size() == 2);
        CHECK(lines[0].starts_with("<4>warning: log: unknown level 'loud'"));
        CHECK(lines[1] == "<6>info: visible");
    }

    TEST_CASE("logging: format names map to line shapes")
    {
        CHECK(log_format_for("json", true) == LogFormat::json);
        CHECK(log_format_for("json", false) == LogFormat::json);
        CHECK(log_format_for("text", true) == LogFormat::journald);
        CHECK(log_format_for("text", false) == LogFormat::text);
    }

} // TEST_SUITE
