// The control socket against real Unix sockets: a real ControlServer with a
// few handlers, real clients (ControlClient, raw sockets, forked children with
// other uids, the metalsync binary), and the CLI's rendering of canned replies.

#include <doctest/doctest.h>

#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <thread>

#include <nlohmann/json.hpp>

#include "daemon/cli_status.hpp"
#include "daemon/control_client.hpp"
#include "daemon/control_server.hpp"
#include "tests/support/test_support.hpp"

using namespace metalsync;
using namespace metalsync::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr gid_t k_admin_gid = 4242;
constexpr uid_t k_nobody = 65534;

ControlReply ok(json arguments, std::string text = "ok")
{
    ControlReply reply;
    reply.text = std::move(text);
    reply.arguments = std::move(arguments);
    return reply;
}

void add_test_commands(ControlServer& server)
{
    server.add_command(
        "echo",
        [](const ControlRequest& request) {
            return ok({{"arguments", request.arguments}, {"uid", request.peer_uid}, {"pid", request.peer_pid}});
        },
        false, "Echo the arguments");
    server.add_command(
        "slow", [](const ControlRequest&) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            return ok(json::object());
        },
        false, "Answer after 50 ms");
    server.add_command(
        "suspend", [](const ControlRequest&) { return ok(json::object(), "suspended"); }, true, "Suspend");
    server.add_command(
        "explode", [](const ControlRequest&) -> ControlReply { throw std::runtime_error("boom: disk on fire"); },
        false, "Throw");
}

struct Fixture {
    TempDir tmp{"control"};
    fs::path socket = tmp / "run" / "metalsync.sock";
};

int connect_raw(const fs::path& path)
{
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    return fd;
}

void send_raw(int fd, const std::string& data)
{
    std::size_t sent = 0;
    while (sent < data.size()) {
        ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) {
            return;  // the server may have answered and closed already
        }
        sent += static_cast<std::size_t>(n);
    }
}

// Reads until the server closes (or 20 s pass) and parses the reply.
json read_reply(int fd)
{
    std::string in;
    char buf[4096];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd pfd{fd, POLLIN, 0};
        if (::poll(&pfd, 1, 100) <= 0) {
            continue;
        }
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            break;
        }
        in.append(buf, static_cast<std::size_t>(n));
    }
    INFO("reply: " << in);
    REQUIRE_FALSE(in.empty());
    return json::parse(in);
}

json raw_exchange(const fs::path& path, const std::string& request, bool shut_write = true)
{
    int fd = connect_raw(path);
    send_raw(fd, request);
    if (shut_write) {
        ::shutdown(fd, SHUT_WR);
    }
    json reply = read_reply(fd);
    ::close(fd);
    return reply;
}

ControlReply call(const fs::path& socket, const std::string& command, const json& arguments = json())
{
    auto reply = ControlClient{}.call(socket, command, arguments, std::chrono::seconds(20));
    INFO(command << ": " << (reply ? reply->text : reply.error()));
    REQUIRE(reply.has_value());
    return *reply;
}

// Runs `command` from a forked child with other credentials; the child sends
// the reply back through a pipe as JSON.
json call_as(const fs::path& socket, const std::string& command, uid_t uid, gid_t gid,
             const std::vector<gid_t>& groups = {})
{
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(pipe_fds[0]);
        json out;
        if (::setgroups(groups.size(), groups.data()) != 0 || ::setresgid(gid, gid, gid) != 0 ||
            ::setresuid(uid, uid, uid) != 0) {
            out = {{"error", std::string("cannot drop privileges: ") + std::strerror(errno)}};
        } else {
            auto reply = ControlClient{}.call(socket, command, json(), std::chrono::seconds(20));
            out = reply ? json{{"result", reply->result}, {"text", reply->text}} : json{{"error", reply.error()}};
        }
        std::string data = out.dump();
        [[maybe_unused]] auto written = ::write(pipe_fds[1], data.data(), data.size());
        ::_exit(0);
    }
    ::close(pipe_fds[1]);
    std::string data;
    char buf[4096];
    ssize_t n = 0;
    while ((n = ::read(pipe_fds[0], buf, sizeof buf)) > 0) {
        data.append(buf, static_cast<std::size_t>(n));
    }
    ::close(pipe_fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    INFO("child said: " << data);
    REQUIRE_FALSE(data.empty());
    json out = json::parse(data);
    REQUIRE_FALSE(out.contains("error"));
    return out;
}

// A server whose sockets a forked child running as nobody can reach.
struct OpenFixture {
    TempDir tmp{"control-open"};
    fs::path socket = tmp / "metalsync.sock";
    OpenFixture() { fs::permissions(tmp.path(), fs::perms::all); }
};

void use_utc()
{
    ::setenv("TZ", "UTC", 1);
    ::tzset();
}

} // namespace

TEST_SUITE("daemon")
{
    TEST_CASE("control socket: a request round-trips with the peer's credentials")
    {
        Fixture f;
        ControlServer server(f.socket);
        add_test_commands(server);
        REQUIRE(server.start().has_value());
        CHECK(fs::is_socket(f.socket));
        CHECK((fs::status(f.socket).permissions() & fs::perms::all) == static_cast<fs::perms>(0660));

        auto reply = call(f.socket, "echo", {{"name", "node-01"}});
        CHECK(reply.result == k_result_success);
        CHECK(reply.text == "ok");
        CHECK(reply.arguments["arguments"] == json{{"name", "node-01"}});
        CHECK(reply.arguments["uid"] == ::getuid());
        CHECK(reply.arguments["pid"] == ::getpid());

        SUBCASE("a client that keeps its write side open still gets its reply")
        {
            json raw = raw_exchange(f.socket, R"({"command": "echo", "arguments": {"x": [1, "}"]}})", false);
            CHECK(raw["result"] == 0);
            CHECK(raw["arguments"]["arguments"] == json{{"x", json::array({1, "}"})}});
        }
        SUBCASE("a request sent a byte at a time is parsed as it arrives")
        {
            int fd = connect_raw(f.socket);
            for (char c : std::string(R"(  {"command":"echo"})")) {
                send_raw(fd, std::string(1, c));
            }
            json raw = read_reply(fd);
            ::close(fd);
            CHECK(raw["result"] == 0);
        }
    }

    TEST_CASE("control socket: an unknown command answers 2")
    {
        Fixture f;
        ControlServer server(f.socket);
        REQUIRE(server.start().has_value());
        auto reply = call(f.socket, "stats-get");
        CHECK(reply.result == k_result_unsupported);
        CHECK(reply.text == "'stats-get' command not supported.");
    }

    TEST_CASE("control socket: malformed requests get a well-formed error")
    {
        Fixture f;
        ControlServer server(f.socket);
        add_test_commands(server);
        REQUIRE(server.start().has_value());

        struct Variant {
            const char* request;
            const char* text_start;
        };
        for (auto [request, text_start] : {
                 Variant{R"({"command": nope})", "malformed request: "},
                 Variant{"not json at all", "malformed request: expected a JSON object"},
                 Variant{"", "malformed request: empty request"},
                 Variant{R"({"command": "echo")", "malformed request: "},
                 Variant{R"({"arguments": {}})", "malformed request: missing \"command\""},
                 Variant{R"({"command": 42})", "malformed request: \"command\" must be a string"},
                 Variant{R"({"command": "echo", "arguments": [1]})", "malformed request: \"arguments\" must be"},
             }) {
            CAPTURE(request);
            json reply = raw_exchange(f.socket, request);
            CHECK(reply["result"] == 1);
            REQUIRE(reply["text"].is_string());
            CHECK(reply["text"].get<std::string>().starts_with(text_start));
        }
        // The server is still fine afterwards.
        CHECK(call(f.socket, "echo").result == 0);
    }

    TEST_CASE("control protocol: the log's reason never quotes the request's bytes; the reply may")
    {
        for (const char* request : {R"({"command": "node-get", "arguments": {"token": s3cr3t-Sesame}})",
                                    R"({"command": "x", "password": 's3cr3t-Sesame'})",
                                    R"({"s3cr3t-Sesame)", R"({"command": "s3cr3t-Sesame; expected 'x'" )"}) {
            CAPTURE(request);
            auto parsed = parse_control_request(request, 1 << 20);
            REQUIRE_FALSE(parsed.has_value());
            const auto& error = parsed.error();
            CHECK(error.log_reason.find("s3cr3t") == std::string::npos);
            CHECK(error.log_reason.find("Sesame") == std::string::npos);
            CHECK_FALSE(error.log_reason.empty());
            CHECK(error.reply.text.starts_with("malformed request: "));
        }
        // Where the parser quoted bytes, the reply (to the sender only) keeps them.
        auto parsed = parse_control_request(R"({"command": "s3cr3t)", 1 << 20);
        REQUIRE_FALSE(parsed.has_value());
        CHECK(parsed.error().reply.text.find("s3cr3t") != std::string::npos);
        CHECK(parsed.error().log_reason.find("not logged") != std::string::npos);
    }

    TEST_CASE("control socket: an oversized request is refused with an error reply")
    {
        Fixture f;
        ControlServerOptions options;
        options.max_request_bytes = 1024;
        ControlServer server(f.socket, options);
        add_test_commands(server);
        REQUIRE(server.start().has_value());

        SUBCASE("through the client")
        {
            auto reply = call(f.socket, "echo", {{"blob", std::string(200 * 1024, 'x')}});
            CHECK(reply.result == k_result_error);
            CHECK(reply.text == "request larger than 1024 bytes");
        }
        SUBCASE("a client that never stops sending")
        {
            json reply = raw_exchange(f.socket, R"({"command": "echo", "arguments": {"blob": ")" +
                                                     std::string(4 * 1024 * 1024, 'x'),
                                      false);
            CHECK(reply["result"] == 1);
        }
        CHECK(call(f.socket, "echo", {{"small", true}}).result == 0);
    }

    TEST_CASE("control socket: a silent client times out without holding up others")
    {
        Fixture f;
        ControlServerOptions options;
        options.read_timeout = std::chrono::milliseconds(3000);
        ControlServer server(f.socket, options);
        add_test_commands(server);
        REQUIRE(server.start().has_value());

        int slow = connect_raw(f.socket);
        send_raw(slow, R"({"command": "ec)");
        auto reply = call(f.socket, "echo", {{"n", 2}});
        CHECK(reply.result == 0);
        // The first client is still waiting: nothing to read yet.
        pollfd pfd{slow, POLLIN, 0};
        CHECK(::poll(&pfd, 1, 0) == 0);

        json timed_out = read_reply(slow);
        ::close(slow);
        CHECK(timed_out["result"] == 1);
        CHECK(timed_out["text"] == "request not complete within 3s");
    }

    TEST_CASE("control socket: 50 concurrent clients are all answered")
    {
        Fixture f;
        ControlServer server(f.socket);  // 32 connections at once; the rest wait in the backlog
        add_test_commands(server);
        REQUIRE(server.start().has_value());

        std::atomic<int> answered{0};
        std::vector<std::string> failures(50);
        std::vector<std::thread> clients;
        for (int i = 0; i < 50; ++i) {
            clients.emplace_back([&, i] {
                auto reply = ControlClient{}.call(f.socket, i % 2 == 0 ? "slow" : "echo", json{{"i", i}},
                                                  std::chrono::seconds(30));
                if (reply && reply->result == 0) {
                    ++answered;
                } else {
                    failures[static_cast<std::size_t>(i)] = reply ? reply->text : reply.error();
                }
            });
        }
        for (auto& client : clients) {
            client.join();
        }
        for (const auto& failure : failures) {
            CHECK(failure.empty());
        }
        CHECK(answered == 50);
    }

    TEST_CASE("control socket: mutating commands need root, the daemon's uid or the admin group")
    {
        OpenFixture f;
        ControlServerOptions options;
        options.mode = 0666;
        options.admin_group = k_admin_gid;
        ControlServer server(f.socket, options);
        add_test_commands(server);
        REQUIRE(server.start().has_value());
        REQUIRE(::geteuid() == 0);  // the tests run as root: the children switch uid

        SUBCASE("another uid without the group is refused, but may read")
        {
            json reply = call_as(f.socket, "suspend", k_nobody, k_nobody);
            CHECK(reply["result"] == 1);
            std::string text = reply["text"];
            CHECK(text.starts_with("'suspend' needs root or group "));
            CHECK(text.ends_with("(you are uid 65534)"));
            CHECK(call_as(f.socket, "echo", k_nobody, k_nobody)["result"] == 0);
        }
        SUBCASE("the admin group as primary group is allowed")
        {
            json reply = call_as(f.socket, "suspend", k_nobody, k_admin_gid);
            CHECK(reply["result"] == 0);
            CHECK(reply["text"] == "suspended");
        }
        SUBCASE("the admin group as a supplementary group is allowed")
        {
            json reply = call_as(f.socket, "suspend", k_nobody, k_nobody, {100, k_admin_gid});
            CHECK(reply["result"] == 0);
        }
        SUBCASE("root is allowed")
        {
            CHECK(call(f.socket, "suspend").result == 0);
        }
    }

    TEST_CASE("control socket: list-commands names every command, sorted")
    {
        Fixture f;
        ControlServer server(f.socket);
        add_test_commands(server);
        REQUIRE(server.start().has_value());
        server.add_command("version-get", [](const ControlRequest&) { return ok({{"version", "9.9"}}); }, false,
                           "Version");
        auto reply = call(f.socket, "list-commands");
        CHECK(reply.result == 0);
        CHECK(reply.arguments == json{"echo", "explode", "list-commands", "slow", "suspend", "version-get"});
    }

    TEST_CASE("control socket: a handler that throws answers 1 with the exception's text")
    {
        Fixture f;
        ControlServer server(f.socket);
        add_test_commands(server);
        REQUIRE(server.start().has_value());
        auto reply = call(f.socket, "explode");
        CHECK(reply.result == k_result_error);
        CHECK(reply.text == "boom: disk on fire");
        CHECK(call(f.socket, "echo").result == 0);
    }

    TEST_CASE("control socket: start and stop own the socket file")
    {
        Fixture f;
        SUBCASE("stop() unlinks the socket and clients then get an operator's message")
        {
            ControlServer server(f.socket);
            REQUIRE(server.start().has_value());
            REQUIRE(fs::exists(f.socket));
            server.stop();
            CHECK_FALSE(fs::exists(f.socket));
            auto reply = ControlClient{}.call(f.socket, "echo");
            REQUIRE_FALSE(reply.has_value());
            CHECK(reply.error() == "cannot connect to " + f.socket.string() +
                                       ": No such file or directory (is the daemon running? start it with "
                                       "systemctl start metalsync)");
        }
        SUBCASE("a second server on a live socket is refused and the first keeps serving")
        {
            ControlServer first(f.socket);
            add_test_commands(first);
            REQUIRE(first.start().has_value());
            ControlServer second(f.socket);
            auto started = second.start();
            REQUIRE_FALSE(started.has_value());
            CHECK(started.error() == "another metalsync is listening on " + f.socket.string());
            CHECK(call(f.socket, "echo").result == 0);
        }
        SUBCASE("a stale socket file nobody listens on is replaced")
        {
            fs::create_directories(f.socket.parent_path());
            int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
            sockaddr_un addr{};
            addr.sun_family = AF_UNIX;
            std::strncpy(addr.sun_path, f.socket.c_str(), sizeof addr.sun_path - 1);
            REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
            ::close(fd);
            REQUIRE(fs::is_socket(f.socket));

            ControlServer server(f.socket);
            add_test_commands(server);
            REQUIRE(server.start().has_value());
            CHECK(call(f.socket, "echo").result == 0);
        }
        SUBCASE("a regular file in the way is left alone")
        {
            fs::create_directories(f.socket.parent_path());
            write_file(f.socket, "not a socket\n");
            ControlServer server(f.socket);
            auto started = server.start();
            REQUIRE_FALSE(started.has_value());
            CHECK(started.error().find("is not a socket") != std::string::npos);
            CHECK(read_file(f.socket) == "not a socket\n");
        }
    }

    TEST_CASE("cli: durations, times and ages")
    {
        use_utc();
        CHECK(format_local_time(1795615392) == "2026-11-25 14:03:12");
        CHECK(format_relative(1000 - 192, 1000) == "3m12s ago");
        CHECK(format_relative(1090, 1000) == "in 1m30s");
        CHECK(format_duration(2 * 86400 + 3600 * 4 + 5) == "2d4h");
        CHECK(format_duration(3600) == "1h");
        CHECK(parse_duration("500ms") == std::chrono::milliseconds(500));
        CHECK(parse_duration("1h30m") == std::chrono::minutes(90));
        CHECK(parse_duration("0.5") == std::chrono::milliseconds(500));
        CHECK_FALSE(parse_duration("soon").has_value());
        CHECK(parse_since("10m", 10000) == 9400);
        CHECK(parse_since("@1700000000", 0) == 1700000000);
        CHECK(parse_since("2026-11-25 14:03:12", 0) == 1795615392);
        CHECK(parse_since("2026-11-25T14:03", 0) == 1795615380);
        CHECK(parse_since("2026-11-25", 0) == 1795564800);
        CHECK_FALSE(parse_since("yesterday", 0).has_value());
    }

    TEST_CASE("cli: status renders a full reply and survives an empty one")
    {
        use_utc();
        const std::int64_t now = 1795615392;
        json status = json::parse(R"({
            "revision": "3f2a1c9d8e7f60514233", "revisionAuthor": "Alice <alice@example.org>",
            "revisionSummary": "Add node-13", "lastPoll": 1795615380, "gitError": null,
            "rejected": {"commit": "9e8d7c6b5a4f", "errors": ["nodes/n13.yaml:4:7: spec.bmc.address: not an address"]},
            "suspended": false,
            "nodes": {"total": 12, "atGoal": 10, "byCondition": {"at-goal": 10, "progressing": 2}, "byState": {"active": 12}},
            "executor": {"queued": 1, "running": 2, "saturated": ["maxProvisioning"]},
            "massDeletionHeld": null})");
        std::string out = render_status(status, "12 nodes, 10 at goal", now);
        INFO(out);
        CHECK(out.starts_with("12 nodes, 10 at goal\n"));
        CHECK(out.find("3f2a1c9  \"Add node-13\"  (Alice <alice@example.org>)") != std::string::npos);
        CHECK(out.find("2026-11-25 14:03:00 (12s ago)") != std::string::npos);
        CHECK(out.find("commit 9e8d7c6, 1 error") != std::string::npos);
        CHECK(out.find("nodes/n13.yaml:4:7: spec.bmc.address: not an address") != std::string::npos);
        CHECK(out.find("12 total, 10 at goal") != std::string::npos);
        CHECK(out.find("1 queued, 2 running; at limit: maxProvisioning") != std::string::npos);
        CHECK(out.find("progressing  2") != std::string::npos);
        CHECK(out.find("Git error") == std::string::npos);
        CHECK_FALSE(status_converged(status));
        status["nodes"]["atGoal"] = 12;
        CHECK(status_converged(status));

        std::string empty = render_status(json::object(), "", now);
        CHECK(empty.find("none accepted yet") != std::string::npos);
        CHECK(empty.find("never") != std::string::npos);
        CHECK_FALSE(status_converged(json::object()));
        CHECK_NOTHROW(render_status(json::array({1, 2}), "", now));
        CHECK_NOTHROW(render_status(json::parse(R"({"nodes": 3, "executor": {"saturated": "x"}, "rejected": {}})"),
                                    "", now));
    }

    TEST_CASE("cli: node list renders a table and filters by condition")
    {
        use_utc();
        json nodes = json::parse(R"({"nodes": [
            {"name": "node-01", "provisionState": "active", "goal": "active", "condition": "at-goal",
             "since": 1795615200, "attempts": 0, "message": ""},
            {"name": "node-02", "provisionState": "deploy failed", "goal": "active", "condition": "failed",
             "since": 1795615000, "attempts": 3, "lastError": "deploy timed out", "suspended": true},
            {"name": "node-03"}]})");
        std::string out = render_node_list(nodes, "", 1795615392);
        INFO(out);
        CHECK(out.starts_with("NAME     STATE          GOAL    CONDITION           SINCE      ATTEMPTS  MESSAGE\n"));
        CHECK(out.find("node-02  deploy failed  active  failed (suspended)  6m32s ago  3         deploy timed out") !=
              std::string::npos);
        CHECK(out.find("node-03  -              -       -                   -          -\n") != std::string::npos);
        std::string failed = render_node_list(nodes, "failed", 1795615392);
        CHECK(failed.find("node-01") == std::string::npos);
        CHECK(failed.find("node-02") != std::string::npos);
        CHECK(render_node_list(nodes, "progressing", 0) == "No nodes with condition progressing.\n");
        CHECK(render_node_list(json(), "", 0) == "No nodes.\n");
    }

    TEST_CASE("cli: node detail renders what it has and skips what is missing")
    {
        use_utc();
        const std::int64_t now = 1795615392;
        SUBCASE("a full reply")
        {
            json reply = json::parse(R"({
                "node": {"name": "node-02", "provisionState": "available", "goal": "active", "condition": "waiting",
                         "since": 1795615332, "attempts": 2, "lastErrorType": "ironic", "lastError": "BMC unreachable",
                         "nextAttemptAt": 1795615482, "waitingOn": "maxProvisioning", "queuePosition": 3,
                         "uuid": "5d3c1f7e", "bmc": {"driver": "ipmi", "address": "192.168.1.102"},
                         "powerState": "power on", "powerGoal": "off", "maintenance": true,
                         "maintenanceReason": "fan replaced"},
                "events": [{"time": 1795615332, "name": "node.deploy.failed", "message": "BMC unreachable",
                            "revision": "3f2a1c9d8e7f", "author": "alice"}],
                "actions": [{"id": 17, "verb": "deploy", "state": "failed", "createdAt": 1795615300,
                             "finishedAt": 1795615332, "result": "BMC unreachable", "revision": "3f2a1c9d8e7f",
                             "author": "alice"}]})");
            std::string out = render_node(reply, now);
            INFO(out);
            CHECK(out.starts_with("Node node-02\n"));
            CHECK(out.find("available (goal active)") != std::string::npos);
            CHECK(out.find("waiting since 2026-11-25 14:02:12 (1m ago)") != std::string::npos);
            CHECK(out.find("ironic: BMC unreachable") != std::string::npos);
            CHECK(out.find("2, next 2026-11-25 14:04:42 (in 1m30s)") != std::string::npos);
            CHECK(out.find("maxProvisioning (queue position 3)") != std::string::npos);
            CHECK(out.find("ipmi 192.168.1.102") != std::string::npos);
            CHECK(out.find("node.deploy.failed") != std::string::npos);
            CHECK(out.find("3f2a1c9") != std::string::npos);
            CHECK(out.find("17  deploy  failed") != std::string::npos);
            CHECK(out.find("Power:        power on (goal off)") != std::string::npos);
            CHECK(out.find("Maintenance:  on: fan replaced") != std::string::npos);
        }
        SUBCASE("missing and mistyped fields")
        {
            std::string out = render_node(json::parse(R"({"node": {"name": "node-09", "attempts": "two",
                                                          "since": "a while", "events": 5}, "actions": {}})"),
                                          now);
            INFO(out);
            CHECK(out.starts_with("Node node-09\n"));
            CHECK(out.find("State:") != std::string::npos);
            CHECK(out.find("since a while") != std::string::npos);
            CHECK(out.find("Attempts:") != std::string::npos);
            CHECK(out.find("UUID") == std::string::npos);
            CHECK(out.find("Last error") == std::string::npos);
            CHECK(out.find("Recent events:\n  none") != std::string::npos);
            CHECK(out.find("Recent actions:\n  none") != std::string::npos);
            CHECK_NOTHROW(render_node(json(), now));
        }
    }

    TEST_CASE("cli: events are filtered, limited and rendered oldest first")
    {
        use_utc();
        json events = json::parse(R"({"events": [
            {"time": 300, "objectKind": "node", "objectName": "node-01", "name": "node.deploy.done", "message": "m3"},
            {"time": 100, "objectKind": "node", "objectName": "node-01", "name": "node.enrolled", "message": "m1"},
            {"time": 200, "objectKind": "node", "objectName": "node-02", "name": "node.enrolled", "message": "m2"},
            {"time": 250, "objectKind": "revision", "objectName": "3f2a1c9d8e7f", "name": "revision.accepted"}]})");
        json kept = filter_events(events, "node-01", std::nullopt, 0);
        REQUIRE(kept["events"].size() == 2);
        CHECK(kept["events"][0]["message"] == "m1");
        kept = filter_events(events, "", 150, 2);
        REQUIRE(kept["events"].size() == 2);
        CHECK(kept["events"][0]["time"] == 250);
        CHECK(kept["events"][1]["time"] == 300);
        std::string out = render_events(kept, 400);
        INFO(out);
        CHECK(out.find("revision/3f2a1c9d8e7f  revision.accepted") != std::string::npos);
        CHECK(out.find("node/node-01") != std::string::npos);
        CHECK(render_events(json::object(), 0) == "No events.\n");
    }

    TEST_CASE("cli: daemon plan renders actions")
    {
        json plan = json::parse(R"({"actions": [{"node": "node-01", "verb": "deploy", "reason": "image changed"}]})");
        std::string out = render_daemon_plan(plan);
        CHECK(out.find("node-01  deploy  image changed") != std::string::npos);
        CHECK(out.find("1 action planned.") != std::string::npos);
        CHECK(render_daemon_plan(json::object()).starts_with("No changes"));
    }

    TEST_CASE("cli: the binary exits 2 with an operator's message when no daemon listens")
    {
        auto result = run({metalsync_binary().string(), "status", "-s", "/nonexistent/metalsync.sock"});
        CHECK(result.exit_code == 2);
        CHECK(result.out.empty());
        CHECK(result.err == "metalsync: cannot connect to /nonexistent/metalsync.sock: No such file or directory "
                            "(is the daemon running? start it with systemctl start metalsync)\n");

        auto env = run({metalsync_binary().string(), "nodes"}, std::nullopt, std::chrono::seconds(60),
                       {"METALSYNC_SOCKET=/nonexistent/other.sock"});
        CHECK(env.exit_code == 2);
        CHECK(env.err.find("/nonexistent/other.sock") != std::string::npos);

        auto usage = run({metalsync_binary().string(), "events", "--since", "yesterday", "-s", "/nonexistent/x"});
        CHECK(usage.exit_code == 2);
    }

    TEST_CASE("cli: the binary against a live server")
    {
        Fixture f;
        json status = json::parse(R"({"revision": "3f2a1c9d8e7f", "lastPoll": 1795615380,
            "nodes": {"total": 2, "atGoal": 1, "byCondition": {"at-goal": 1, "failed": 1}}})");
        std::atomic<bool> converged{false};
        std::atomic<bool> progressing{false};  // node-02 progressing instead of failed
        // After what its handlers read: the server (and its threads) go first
        // at the end of the scope (ThreadSanitizer saw `status` destroyed
        // while a connection thread could still be finishing with it).
        ControlServer server(f.socket);
        server.add_command(
            "status-get",
            [&](const ControlRequest&) {
                json copy = status;
                if (converged) {
                    copy["nodes"]["atGoal"] = 2;
                } else if (progressing) {
                    copy["nodes"]["byCondition"] = {{"at-goal", 1}, {"progressing", 1}};
                }
                return ok(copy, converged ? "2 nodes, 2 at goal" : "2 nodes, 1 at goal");
            },
            false, "Status");
        server.add_command(
            "node-list",
            [&](const ControlRequest&) {
                return ok({{"nodes", json::array({{{"name", "node-01"}, {"condition", "at-goal"}},
                                                  {{"name", "node-02"},
                                                   {"condition", progressing ? "progressing" : "failed"},
                                                   {"message", progressing ? "deploying" : "deploy failed 5 times"}}})}});
            },
            false, "Nodes");
        server.add_command(
            "node-get",
            [](const ControlRequest& request) {
                ControlReply reply;
                reply.result = k_result_empty;
                reply.text = "no node named " + request.arguments.value("name", std::string("?"));
                return reply;
            },
            false, "Node");
        server.add_command(
            "version-get", [](const ControlRequest&) { return ok({{"version", "0.1.0"}}, "0.1.0"); }, false,
            "Version");
        server.add_command(
            "suspend",
            [](const ControlRequest& request) {
                return ok(json::object(), "suspended " + request.arguments.value("name", std::string("all")));
            },
            true, "Suspend");
        REQUIRE(server.start().has_value());
        const std::string bin = metalsync_binary().string();
        const std::string sock = f.socket.string();

        auto nodes = run({bin, "nodes", "-s", sock, "--condition", "failed"});
        CHECK(nodes.exit_code == 0);
        CHECK(nodes.out.find("node-02") != std::string::npos);
        CHECK(nodes.out.find("node-01") == std::string::npos);

        auto json_status = run({bin, "status", "-s", sock, "-o", "json"});
        CHECK(json_status.exit_code == 0);
        CHECK(json::parse(json_status.out) == status);

        // Status exits 0 although a node failed.
        auto text_status = run({bin, "status", "-s", sock});
        CHECK(text_status.exit_code == 0);
        CHECK(text_status.out.starts_with("2 nodes, 1 at goal\n"));

        auto missing = run({bin, "node", "node-99", "-s", sock});
        CHECK(missing.exit_code == 1);
        CHECK(missing.err == "metalsync node: no node named node-99\n");  // the command typed, not the protocol's

        auto suspend = run({bin, "suspend", "node-01", "-s", sock});
        CHECK(suspend.exit_code == 0);
        CHECK(suspend.out == "suspended node-01\n");

        auto unsupported = run({bin, "sync", "-s", sock});
        CHECK(unsupported.exit_code == 1);
        CHECK(unsupported.err.find("'reconcile-now' command not supported.") != std::string::npos);

        auto version = run({bin, "version", "-s", sock});
        CHECK(version.exit_code == 0);
        CHECK(version.out == "metalsync " METALSYNC_VERSION "\ndaemon: metalsync 0.1.0\n");

        // A failed node never converges by waiting: stopped at once, named.
        auto stuck = run({bin, "status", "-s", sock, "--until-converged", "--interval", "200ms", "--timeout", "60s"});
        CHECK(stuck.exit_code == 1);
        CHECK(stuck.err.find("not converging: node-02 failed: deploy failed 5 times") != std::string::npos);
        CHECK(stuck.err.find("node-01") == std::string::npos);

        progressing = true;
        auto timed_out = run({bin, "status", "-s", sock, "--until-converged", "--interval", "200ms", "--timeout", "1s"});
        CHECK(timed_out.exit_code == 1);
        CHECK(timed_out.err.find("not converged within 1s") != std::string::npos);
        CHECK(timed_out.err.find("still waiting: node-02 progressing: deploying") != std::string::npos);

        converged = true;
        auto done = run({bin, "status", "-s", sock, "--until-converged", "--interval", "200ms", "--timeout", "60s"});
        CHECK(done.exit_code == 0);
        CHECK(done.out.find("2 nodes, 2 at goal") != std::string::npos);
    }
}
